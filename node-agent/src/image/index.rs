//! The store's index of images: reference → manifest, config and layers. One JSON file,
//! replaced atomically (temp file, fsync, rename, fsync of the directory), so readers never
//! see a half-written index and a crash leaves either the old or the new one.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use super::error::{ImageError, IoContext};

/// Format version of `index.json`.
const VERSION: u32 = 1;

/// The whole index.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct IndexFile {
    pub version: u32,
    /// By normalised reference.
    pub images: BTreeMap<String, ImageRecord>,
}

/// One image as the store knows it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct ImageRecord {
    /// Normalised reference (`docker.io/library/busybox:latest`).
    pub reference: String,
    /// Digest of the manifest (what `@sha256:` pulls refer to).
    pub manifest_digest: String,
    /// Media type of that manifest.
    pub manifest_media_type: String,
    /// Digest of the image configuration blob.
    pub config_digest: String,
    /// Layers, bottom first.
    pub layers: Vec<LayerRecord>,
    /// Sum of the manifest's blob sizes (config and compressed layers).
    pub size: u64,
    /// When it was stored (Unix seconds).
    pub created: u64,
    /// When it was last pulled, imported or marked used (Unix seconds); GC removes the
    /// least recently used first.
    pub last_used: u64,
}

/// One layer of an image.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct LayerRecord {
    /// Digest of the (compressed) blob.
    pub digest: String,
    /// Digest of the uncompressed tar: names the unpacked directory.
    pub diff_id: String,
    /// The blob's media type.
    pub media_type: String,
    /// The blob's size.
    pub size: u64,
}

impl IndexFile {
    /// Reads the index; a missing file is an empty store.
    pub fn load(path: &Path) -> Result<IndexFile, ImageError> {
        let bytes = match fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(IndexFile {
                    version: VERSION,
                    images: BTreeMap::new(),
                })
            }
            Err(e) => return Err(ImageError::io(format!("reading {}", path.display()), e)),
        };
        let index: IndexFile = serde_json::from_slice(&bytes).map_err(|e| {
            ImageError::malformed(
                format!("image index {}", path.display()),
                format!("{e}; move it away to start with an empty store"),
            )
        })?;
        if index.version != VERSION {
            return Err(ImageError::malformed(
                format!("image index {}", path.display()),
                format!("version {} is not {VERSION}", index.version),
            ));
        }
        Ok(index)
    }

    /// Writes the index atomically; `tmp` is a path on the same file system.
    pub fn save(&self, path: &Path, tmp: &Path) -> Result<(), ImageError> {
        let bytes =
            serde_json::to_vec_pretty(self).map_err(|e| ImageError::malformed("image index", e))?;
        let mut f = File::create(tmp).ctx(|| format!("creating {}", tmp.display()))?;
        f.write_all(&bytes)
            .and_then(|_| f.sync_all())
            .ctx(|| format!("writing {}", tmp.display()))?;
        drop(f);
        fs::rename(tmp, path).ctx(|| format!("replacing {}", path.display()))?;
        if let Some(dir) = path.parent() {
            sync_dir(dir)?;
        }
        Ok(())
    }

    /// Every blob digest (manifests, configs, layers) some image needs.
    pub fn referenced_blobs(&self) -> BTreeSet<String> {
        let mut set = BTreeSet::new();
        for img in self.images.values() {
            set.insert(img.manifest_digest.clone());
            set.insert(img.config_digest.clone());
            for l in &img.layers {
                set.insert(l.digest.clone());
            }
        }
        set
    }

    /// Every diff id (unpacked layer directory) some image needs.
    pub fn referenced_layers(&self) -> BTreeSet<String> {
        self.images
            .values()
            .flat_map(|i| i.layers.iter().map(|l| l.diff_id.clone()))
            .collect()
    }
}

/// fsyncs a directory, so renames into it survive a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), ImageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .ctx(|| format!("syncing directory {}", dir.display()))
}
