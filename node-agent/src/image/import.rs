//! Importing images from files, no registry involved: `docker save` tarballs (manifest.json
//! plus config and layer tars) and OCI image layouts (oci-layout, index.json, blobs/), as a
//! tar archive (optionally gzip-compressed) or as a directory.
//!
//! An archive is first extracted under the store's `tmp/` (tar's own checks keep it there),
//! then every blob is copied into the store while it is hashed and checked, exactly as a
//! pulled blob is.

use serde::Deserialize;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Component, Path, PathBuf};

use super::digest::Digest;
use super::error::{ImageError, IoContext};
use super::index::{ImageRecord, LayerRecord};
use super::manifest::{
    host_arch, parse_document, select_platform, Descriptor, Document, Index, Manifest,
    DOCKER_CONFIG, DOCKER_LAYER_GZIP, DOCKER_LAYER_TAR, DOCKER_MANIFEST, MAX_CONFIG_BYTES,
    MAX_MANIFEST_BYTES, OCI_MANIFEST,
};
use super::reference;
use super::store::{now_secs, read_limited, Image, ImageStore, TempPath};
use super::unpack::Compression;

/// Annotation containerd and Docker put on index.json entries: the full reference.
const CONTAINERD_NAME: &str = "io.containerd.image.name";
/// The OCI annotation: a full reference or just a tag.
const OCI_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// One entry of a `docker save` manifest.json.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerSaveEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

impl ImageStore {
    /// Imports every image in `path` (a `docker save` tarball, or an OCI image layout as an
    /// archive or directory) and returns them. Images are named by the archive's tags; an OCI
    /// entry that only has a tag is named `localhost/<file name>:<tag>`, and one with no
    /// name at all `localhost/<file name>@<digest>`.
    pub fn import(&self, path: &Path) -> Result<Vec<Image>, ImageError> {
        let span = tracing::info_span!("image_import", archive = %path.display());
        let _enter = span.enter();
        let _lock = self.lock_shared()?;
        let stem = name_from_path(path);
        let mut extracted = None;
        let dir = if path.is_dir() {
            path.to_path_buf()
        } else {
            let tmp = TempPath::new(self.temp_path("import"));
            extract(path, tmp.path())?;
            let dir = tmp.path().to_path_buf();
            extracted = Some(tmp);
            dir
        };
        let images = if dir.join("oci-layout").is_file() && dir.join("index.json").is_file() {
            self.import_oci_layout(&dir, &stem)?
        } else if dir.join("manifest.json").is_file() {
            self.import_docker_save(&dir, &stem)?
        } else {
            return Err(ImageError::NotAnArchive {
                path: path.display().to_string(),
                reason: "it has neither oci-layout + index.json nor manifest.json".into(),
            });
        };
        drop(extracted);
        tracing::debug!(count = images.len(), "images imported");
        Ok(images)
    }

    fn import_oci_layout(&self, dir: &Path, stem: &str) -> Result<Vec<Image>, ImageError> {
        let index_bytes = read_limited(&dir.join("index.json"), MAX_MANIFEST_BYTES as u64)?;
        let index: Index = serde_json::from_slice(&index_bytes)
            .map_err(|e| ImageError::malformed("index.json", e))?;
        if index.manifests.is_empty() {
            return Err(ImageError::NotAnArchive {
                path: dir.display().to_string(),
                reason: "index.json lists no images".into(),
            });
        }
        let locate = |d: &Digest| -> Result<PathBuf, ImageError> {
            inside(dir, &format!("blobs/sha256/{}", d.hex()))
        };
        let mut images = Vec::new();
        for entry in &index.manifests {
            let (manifest, bytes, digest) = self.layout_manifest(entry, &locate)?;
            let name = match (
                entry.annotations.get(CONTAINERD_NAME),
                entry.annotations.get(OCI_REF_NAME),
            ) {
                (Some(full), _) => full.clone(),
                (None, Some(n)) if n.contains(['/', ':', '@']) => n.clone(),
                (None, Some(tag)) => format!("localhost/{stem}:{tag}"),
                (None, None) => format!("localhost/{stem}@{digest}"),
            };
            let reference = reference::parse(&name)?.whole();
            images.push(self.store_image(reference, &manifest, &bytes, &digest, &locate)?);
        }
        Ok(images)
    }

    /// Reads the manifest an index.json entry names, resolving a nested index to this
    /// platform.
    fn layout_manifest(
        &self,
        entry: &Descriptor,
        locate: &dyn Fn(&Digest) -> Result<PathBuf, ImageError>,
    ) -> Result<(Manifest, Vec<u8>, Digest), ImageError> {
        let read = |d: &Descriptor| -> Result<(Vec<u8>, Digest), ImageError> {
            let digest = d.digest()?;
            let bytes = read_limited(&locate(&digest)?, MAX_MANIFEST_BYTES as u64)?;
            let actual = Digest::of(&bytes);
            if actual != digest {
                return Err(ImageError::DigestMismatch {
                    what: "manifest in the archive".into(),
                    expected: digest.to_string(),
                    actual: actual.to_string(),
                });
            }
            Ok((bytes, digest))
        };
        let (bytes, digest) = read(entry)?;
        match parse_document(&bytes, Some(&entry.media_type))? {
            Document::Manifest(m) => Ok((m, bytes, digest)),
            Document::Index(index) => {
                let inner = select_platform(&index, host_arch()).ok_or_else(|| {
                    ImageError::NoMatchingPlatform {
                        reference: digest.to_string(),
                        arch: host_arch().into(),
                        available: super::manifest::describe_platforms(&index),
                    }
                })?;
                let (bytes, digest) = read(inner)?;
                match parse_document(&bytes, Some(&inner.media_type))? {
                    Document::Manifest(m) => Ok((m, bytes, digest)),
                    Document::Index(_) => Err(ImageError::malformed(
                        "image index in the archive",
                        "its linux entry is another index",
                    )),
                }
            }
        }
    }

    fn import_docker_save(&self, dir: &Path, stem: &str) -> Result<Vec<Image>, ImageError> {
        let bytes = read_limited(&dir.join("manifest.json"), MAX_MANIFEST_BYTES as u64)?;
        let entries: Vec<DockerSaveEntry> = serde_json::from_slice(&bytes)
            .map_err(|e| ImageError::malformed("manifest.json of the docker save archive", e))?;
        if entries.is_empty() {
            return Err(ImageError::NotAnArchive {
                path: dir.display().to_string(),
                reason: "manifest.json lists no images".into(),
            });
        }
        let mut images = Vec::new();
        for entry in entries {
            // docker save names files by path, not digest: hash them on the way in.
            let config_path = inside(dir, &entry.config)?;
            if config_path.metadata().map(|m| m.len()).unwrap_or(0) > MAX_CONFIG_BYTES {
                return Err(ImageError::TooLarge {
                    what: format!("image config {}", entry.config),
                    limit: MAX_CONFIG_BYTES,
                });
            }
            let (config_digest, config_size) =
                self.ingest_file(&config_path, None, "image config")?;
            let mut layers = Vec::with_capacity(entry.layers.len());
            for layer in &entry.layers {
                let path = inside(dir, layer)?;
                let media_type = match sniff(&path)? {
                    Compression::Gzip => DOCKER_LAYER_GZIP,
                    Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
                    Compression::None => DOCKER_LAYER_TAR,
                };
                let (digest, size) = self.ingest_file(&path, None, "layer")?;
                layers.push(Descriptor {
                    media_type: media_type.into(),
                    digest: digest.to_string(),
                    size,
                    platform: None,
                    annotations: Default::default(),
                });
            }
            let manifest = Manifest {
                schema_version: 2,
                media_type: Some(DOCKER_MANIFEST.into()),
                config: Descriptor {
                    media_type: DOCKER_CONFIG.into(),
                    digest: config_digest.to_string(),
                    size: config_size,
                    platform: None,
                    annotations: Default::default(),
                },
                layers,
            };
            let manifest_bytes = serde_json::to_vec(&manifest)
                .map_err(|e| ImageError::malformed("generated manifest", e))?;
            let digest = Digest::of(&manifest_bytes);
            let names = match entry.repo_tags {
                Some(tags) if !tags.is_empty() => tags,
                _ => vec![format!("localhost/{stem}@{digest}")],
            };
            let no_source = |d: &Digest| -> Result<PathBuf, ImageError> {
                Err(ImageError::malformed(
                    "docker save archive",
                    format!("blob {d} went missing"),
                ))
            };
            for name in names {
                let reference = reference::parse(&name)?.whole();
                images.push(self.store_image(
                    reference,
                    &manifest,
                    &manifest_bytes,
                    &digest,
                    &no_source,
                )?);
            }
        }
        Ok(images)
    }

    /// Brings the manifest's blobs into the store (from `locate` when missing), unpacks the
    /// layers and records the image.
    fn store_image(
        &self,
        reference: String,
        manifest: &Manifest,
        manifest_bytes: &[u8],
        digest: &Digest,
        locate: &dyn Fn(&Digest) -> Result<PathBuf, ImageError>,
    ) -> Result<Image, ImageError> {
        let _span = tracing::info_span!("image_store", image = %reference).entered();
        let config_digest = manifest.config.digest()?;
        if !self.has_blob(&config_digest) {
            self.ingest_file(
                &locate(&config_digest)?,
                Some(&config_digest),
                "image config",
            )?;
        }
        let config = self.read_config(&config_digest, manifest.layers.len())?;
        let diff_ids = config.rootfs().diff_ids();
        let mut layers = Vec::new();
        for (desc, diff_id) in manifest.layers.iter().zip(diff_ids) {
            let blob = desc.digest()?;
            let diff_id = Digest::parse(diff_id)?;
            if !self.has_blob(&blob) {
                self.ingest_file(&locate(&blob)?, Some(&blob), "layer")?;
            }
            self.ensure_layer(&blob, &diff_id, &desc.media_type)?;
            layers.push(LayerRecord {
                digest: blob.to_string(),
                diff_id: diff_id.to_string(),
                media_type: desc.media_type.clone(),
                size: desc.size,
            });
        }
        self.write_blob_bytes(manifest_bytes, Some(digest), "manifest")?;
        let now = now_secs();
        let record = ImageRecord {
            reference,
            manifest_digest: digest.to_string(),
            manifest_media_type: manifest
                .media_type
                .clone()
                .unwrap_or_else(|| OCI_MANIFEST.into()),
            config_digest: config_digest.to_string(),
            size: manifest.config.size + layers.iter().map(|l| l.size).sum::<u64>(),
            layers,
            created: now,
            last_used: now,
        };
        self.record(record.clone())?;
        self.image_from_record(&record)
    }
}

/// Extracts the (possibly gzip-compressed) tar at `archive` into `dest`. tar's `unpack`
/// skips `..` entries and refuses to write through symlinks that leave `dest`.
fn extract(archive: &Path, dest: &Path) -> Result<(), ImageError> {
    let not_archive = |reason: String| ImageError::NotAnArchive {
        path: archive.display().to_string(),
        reason,
    };
    let f = File::open(archive).ctx(|| format!("opening {}", archive.display()))?;
    let mut r = BufReader::new(f);
    let magic = r
        .fill_buf()
        .ctx(|| format!("reading {}", archive.display()))?;
    let reader: Box<dyn Read> = match Compression::detect(magic) {
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(r)),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(r)
                .map_err(|e| not_archive(format!("zstd: {e}")))?,
        ),
        Compression::None => Box::new(r),
    };
    std::fs::create_dir(dest).ctx(|| format!("creating {}", dest.display()))?;
    let mut tar = tar::Archive::new(reader);
    tar.set_preserve_permissions(false);
    tar.set_preserve_ownerships(false);
    tar.set_unpack_xattrs(false);
    tar.unpack(dest)
        .map_err(|e| not_archive(format!("not a readable tar archive: {e}")))
}

/// `rel` (a path written in an archive's JSON) under `root`, refusing anything that leaves it.
fn inside(root: &Path, rel: &str) -> Result<PathBuf, ImageError> {
    let bad = |why: &str| ImageError::malformed("image archive", format!("path {rel:?} {why}"));
    let p = Path::new(rel);
    if p.components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(bad("leaves the archive"));
    }
    let full = root.join(p);
    let canon = full
        .canonicalize()
        .map_err(|_| bad("is not in the archive"))?;
    let root_canon = root
        .canonicalize()
        .ctx(|| format!("resolving {}", root.display()))?;
    if !canon.starts_with(&root_canon) {
        return Err(bad("leaves the archive"));
    }
    if !canon.is_file() {
        return Err(bad("is not a file"));
    }
    Ok(canon)
}

fn sniff(path: &Path) -> Result<Compression, ImageError> {
    let mut magic = [0u8; 4];
    let mut f = File::open(path).ctx(|| format!("opening {}", path.display()))?;
    let mut n = 0;
    while n < magic.len() {
        match f.read(&mut magic[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) => return Err(ImageError::io(format!("reading {}", path.display()), e)),
        }
    }
    Ok(Compression::detect(&magic[..n]))
}

/// A repository-safe name from the archive's file name (`busybox.tar` → `busybox`).
fn name_from_path(path: &Path) -> String {
    let stem = path
        .file_name()
        .map(|s| s.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let stem = stem
        .trim_end_matches(".gz")
        .trim_end_matches(".tgz")
        .trim_end_matches(".tar");
    let cleaned: String = stem
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let cleaned = cleaned.trim_matches('-').to_string();
    if cleaned.is_empty() {
        "imported".into()
    } else {
        cleaned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_file_names() {
        assert_eq!(name_from_path(Path::new("/x/BusyBox.tar")), "busybox");
        assert_eq!(name_from_path(Path::new("a_b.tar.gz")), "a-b");
        assert_eq!(name_from_path(Path::new("/")), "imported");
    }

    #[test]
    fn archive_paths_stay_inside() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"x").unwrap();
        assert!(inside(dir.path(), "f").is_ok());
        assert!(inside(dir.path(), "./f").is_ok());
        assert!(inside(dir.path(), "../f").is_err());
        assert!(inside(dir.path(), "/etc/passwd").is_err());
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("l")).unwrap();
        assert!(inside(dir.path(), "l").is_err());
    }
}
