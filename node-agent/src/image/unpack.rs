//! Unpacking one layer tarball into a directory that overlayfs can use as a lower layer.
//!
//! No mature crate does this, so it is `tar` + `flate2` + `zstd` with the OCI layer rules on
//! top:
//! - compression (gzip, zstd or none) is detected from the stream's magic bytes; the media
//!   type is only a hint, as `docker save` and some registries label layers loosely;
//! - `.wh.<name>` becomes a 0:0 character device named `<name>` (overlayfs' whiteout);
//! - `.wh..wh..opq` sets `trusted.overlay.opaque=y` on its directory;
//! - paths are taken relative to the layer root (a leading `/` is dropped); a `..` component,
//!   a parent directory reached through a symlink that leaves the root, a hard link to
//!   something outside the root, or a relative symlink that climbs above the root are errors.
//!   Absolute symlink targets are kept: they resolve inside the container's root at run time
//!   and are never followed here;
//! - ownership (when running as root), modes including setuid, mtimes and xattrs are kept.
//!
//! The uncompressed stream is hashed on the way through, so the caller can check the config's
//! diff id without a second pass. Malformed input gives an `UnpackError`, never a panic.

use filetime::FileTime;
use std::ffi::CString;
use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use thiserror::Error;

use super::digest::{Digest, HashingReader};

/// Why a layer could not be unpacked.
#[derive(Debug, Error)]
pub enum UnpackError {
    /// An entry's path leaves the layer root (`..`, or a parent that is a symlink pointing out).
    #[error("entry {path:?} escapes the layer root")]
    PathEscape {
        /// The path as written in the archive.
        path: String,
    },
    /// A hard link to something outside the layer, or a relative symlink above its root.
    #[error("{kind} {path:?} -> {target:?} points outside the layer root")]
    LinkEscape {
        /// "hard link" or "symlink".
        kind: &'static str,
        /// The link's path in the archive.
        path: String,
        /// Its target as written in the archive.
        target: String,
    },
    /// The stream is not a valid (compressed) tar archive.
    #[error("malformed layer archive: {0}")]
    Malformed(String),
    /// A file system operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, naming the path.
        context: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// How a layer blob is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar.
    None,
    /// gzip (magic 1f 8b).
    Gzip,
    /// zstd (magic 28 b5 2f fd).
    Zstd,
}

impl Compression {
    /// Detects the compression from the first bytes of the blob.
    pub fn detect(magic: &[u8]) -> Compression {
        if magic.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    /// What a layer media type claims, if it says anything.
    pub fn from_media_type(media_type: &str) -> Option<Compression> {
        if media_type.ends_with("+gzip") || media_type.ends_with(".tar.gzip") {
            Some(Compression::Gzip)
        } else if media_type.ends_with("+zstd") || media_type.ends_with(".tar.zstd") {
            Some(Compression::Zstd)
        } else if media_type.ends_with(".tar") {
            Some(Compression::None)
        } else {
            None
        }
    }
}

/// Settings for `unpack_layer`.
#[derive(Clone, Debug)]
pub struct UnpackOptions {
    /// chown entries to their archive uid/gid. Needs root; defaults to "running as root".
    pub preserve_ownership: bool,
}

impl Default for UnpackOptions {
    fn default() -> Self {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let euid = unsafe { libc::geteuid() };
        UnpackOptions {
            preserve_ownership: euid == 0,
        }
    }
}

/// What unpacking found.
#[derive(Clone, Debug)]
pub struct UnpackStats {
    /// sha256 of the uncompressed tar: the layer's diff id.
    pub diff_id: Digest,
    /// Size of the uncompressed tar.
    pub uncompressed_size: u64,
    /// The compression detected.
    pub compression: Compression,
    /// Entries in the archive (whiteouts included).
    pub entries: u64,
    /// Whiteouts and opaque markers among them.
    pub whiteouts: u64,
}

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// Unpacks the (possibly compressed) layer tarball read from `reader` into the existing,
/// empty directory `dest`. `media_type` is only used to note a mislabelled layer.
pub fn unpack_layer<R: Read>(
    reader: R,
    dest: &Path,
    media_type: Option<&str>,
    opts: &UnpackOptions,
) -> Result<UnpackStats, UnpackError> {
    let mut buffered = BufReader::with_capacity(256 * 1024, reader);
    let magic = buffered
        .fill_buf()
        .map_err(|e| io_err("reading layer", e))?;
    let compression = Compression::detect(magic);
    if let Some(claimed) = media_type.and_then(Compression::from_media_type) {
        if claimed != compression {
            tracing::debug!(?claimed, detected = ?compression, "layer media type does not match its content; using the content");
        }
    }
    let decoder: Box<dyn Read> = match compression {
        Compression::None => Box::new(buffered),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(buffered)
                .map_err(|e| UnpackError::Malformed(format!("zstd: {e}")))?,
        ),
    };
    let mut archive = tar::Archive::new(HashingReader::new(decoder));
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    archive.set_unpack_xattrs(true);
    archive.set_preserve_ownerships(opts.preserve_ownership);
    archive.set_overwrite(true);

    let dest_canon = dest
        .canonicalize()
        .map_err(|e| io_err(format!("resolving {}", dest.display()), e))?;
    let mut unpacker = Unpacker {
        dest,
        dest_canon: &dest_canon,
        opts,
        dir_times: Vec::new(),
        opaque_dirs: Vec::new(),
        entries: 0,
        whiteouts: 0,
    };
    let entries = archive.entries().map_err(malformed)?;
    for entry in entries {
        let mut entry = entry.map_err(malformed)?;
        unpacker.entry(&mut entry)?;
    }
    let (diff_id, uncompressed_size) = archive.into_inner().finish().map_err(malformed)?;
    unpacker.finish()?;
    Ok(UnpackStats {
        diff_id,
        uncompressed_size,
        compression,
        entries: unpacker.entries,
        whiteouts: unpacker.whiteouts,
    })
}

struct Unpacker<'a> {
    dest: &'a Path,
    dest_canon: &'a Path,
    opts: &'a UnpackOptions,
    /// Directories' mtimes, applied at the end (creating children changes them).
    dir_times: Vec<(PathBuf, FileTime)>,
    opaque_dirs: Vec<PathBuf>,
    entries: u64,
    whiteouts: u64,
}

impl Unpacker<'_> {
    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), UnpackError> {
        self.entries += 1;
        let raw_path = entry.path().map_err(malformed)?.into_owned();
        let shown = raw_path.to_string_lossy().into_owned();
        let rel = normalize(&raw_path).ok_or_else(|| UnpackError::PathEscape {
            path: shown.clone(),
        })?;
        let Some(name) = rel.file_name() else {
            // The root itself ("./"): the layer directory keeps its own metadata.
            return Ok(());
        };
        let name = name.as_bytes();
        self.check_parent(&rel, &shown)?;

        if name.starts_with(WHITEOUT_PREFIX.as_bytes()) {
            self.whiteouts += 1;
            return self.whiteout(&rel, name, &shown);
        }

        let kind = entry.header().entry_type();
        if kind.is_hard_link() {
            return self.hard_link(entry, &rel, &shown);
        }
        if kind.is_symlink() {
            let target = entry
                .link_name()
                .map_err(malformed)?
                .ok_or_else(|| UnpackError::Malformed(format!("symlink {shown:?} has no target")))?
                .into_owned();
            if !symlink_stays_inside(&rel, &target) {
                return Err(UnpackError::LinkEscape {
                    kind: "symlink",
                    path: shown,
                    target: target.to_string_lossy().into_owned(),
                });
            }
        }
        if kind.is_dir() {
            if let Ok(mtime) = entry.header().mtime() {
                self.dir_times.push((
                    self.dest.join(&rel),
                    FileTime::from_unix_time(mtime as i64, 0),
                ));
            }
        }
        match entry.unpack_in(self.dest) {
            Ok(true) => Ok(()),
            Ok(false) => Err(UnpackError::PathEscape { path: shown }),
            Err(e) if e.to_string().contains("outside of destination") => {
                Err(UnpackError::PathEscape { path: shown })
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::UnexpectedEof | io::ErrorKind::InvalidData
                ) =>
            {
                Err(UnpackError::Malformed(format!("{shown}: {e}")))
            }
            Err(e) => Err(io_err(format!("unpacking {shown}"), e)),
        }
    }

    /// Every existing ancestor of `rel` inside the layer must be a directory that resolves to
    /// somewhere inside the root (a symlinked parent pointing outside would make the write land
    /// outside).
    fn check_parent(&self, rel: &Path, shown: &str) -> Result<(), UnpackError> {
        let Some(parent) = rel.parent() else {
            return Ok(());
        };
        let mut cur = self.dest.to_path_buf();
        for c in parent.components() {
            cur.push(c);
            match fs::symlink_metadata(&cur) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(io_err(format!("inspecting {}", cur.display()), e)),
                Ok(m) if m.file_type().is_symlink() => match cur.canonicalize() {
                    Ok(c) if c.starts_with(self.dest_canon) => {}
                    _ => {
                        return Err(UnpackError::PathEscape {
                            path: shown.to_string(),
                        })
                    }
                },
                Ok(m) if !m.is_dir() => {
                    return Err(UnpackError::Malformed(format!(
                        "{shown:?}: a parent is not a directory"
                    )))
                }
                Ok(_) => {}
            }
        }
        Ok(())
    }

    fn whiteout(&mut self, rel: &Path, name: &[u8], shown: &str) -> Result<(), UnpackError> {
        let parent = self.dest.join(rel.parent().unwrap_or(Path::new("")));
        fs::create_dir_all(&parent)
            .map_err(|e| io_err(format!("creating {}", parent.display()), e))?;
        if name == OPAQUE_MARKER.as_bytes() {
            self.opaque_dirs.push(parent);
            return Ok(());
        }
        if name.starts_with(b".wh..wh.") {
            // Other aufs metadata (.wh..wh..plnk etc.): meaningless for overlayfs.
            return Ok(());
        }
        let hidden = &name[WHITEOUT_PREFIX.len()..];
        if hidden.is_empty() || hidden == b"." || hidden == b".." {
            return Err(UnpackError::Malformed(format!(
                "whiteout {shown:?} names no file"
            )));
        }
        let target = parent.join(std::ffi::OsStr::from_bytes(hidden));
        remove_existing(&target)?;
        let c_path = CString::new(target.as_os_str().as_bytes())
            .map_err(|_| UnpackError::Malformed(format!("{shown:?} contains a NUL byte")))?;
        // SAFETY: c_path is a valid NUL-terminated path; mknod does not retain it.
        let rc = unsafe { libc::mknod(c_path.as_ptr(), libc::S_IFCHR, 0) };
        if rc != 0 {
            return Err(io_err(
                format!("creating whiteout device {} (needs root)", target.display()),
                io::Error::last_os_error(),
            ));
        }
        if self.opts.preserve_ownership {
            std::os::unix::fs::lchown(&target, Some(0), Some(0))
                .map_err(|e| io_err(format!("chown {}", target.display()), e))?;
        }
        Ok(())
    }

    fn hard_link<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        rel: &Path,
        shown: &str,
    ) -> Result<(), UnpackError> {
        let raw_target = entry
            .link_name()
            .map_err(malformed)?
            .ok_or_else(|| UnpackError::Malformed(format!("hard link {shown:?} has no target")))?
            .into_owned();
        let escape = || UnpackError::LinkEscape {
            kind: "hard link",
            path: shown.to_string(),
            target: raw_target.to_string_lossy().into_owned(),
        };
        // Targets are archive paths: relative to the layer root, a leading '/' included.
        let target_rel = normalize(&raw_target).ok_or_else(escape)?;
        if target_rel.as_os_str().is_empty() {
            return Err(escape());
        }
        self.check_parent(&target_rel, shown)
            .map_err(|_| escape())?;
        let target = self.dest.join(&target_rel);
        match fs::symlink_metadata(&target) {
            Ok(m) if m.is_dir() => return Err(escape()),
            Ok(_) => {}
            Err(_) => {
                return Err(UnpackError::Malformed(format!(
                    "hard link {shown:?} -> {:?}: target is not in the layer",
                    raw_target
                )))
            }
        }
        let path = self.dest.join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)
                .map_err(|e| io_err(format!("creating {}", parent.display()), e))?;
        }
        if path == target {
            return Ok(());
        }
        remove_existing(&path)?;
        // linkat without AT_SYMLINK_FOLLOW: a symlink target is linked itself, never followed.
        fs::hard_link(&target, &path).map_err(|e| {
            io_err(
                format!("hard linking {} to {}", path.display(), target.display()),
                e,
            )
        })
    }

    fn finish(&mut self) -> Result<(), UnpackError> {
        for dir in &self.opaque_dirs {
            xattr::set(dir, OPAQUE_XATTR, b"y").map_err(|e| {
                io_err(
                    format!("setting {OPAQUE_XATTR} on {} (needs root)", dir.display()),
                    e,
                )
            })?;
        }
        for (dir, mtime) in self.dir_times.iter().rev() {
            // A directory replaced by a later entry may be gone; that is not an error.
            if fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir()) {
                filetime::set_file_times(dir, *mtime, *mtime)
                    .map_err(|e| io_err(format!("setting mtime of {}", dir.display()), e))?;
            }
        }
        Ok(())
    }
}

/// The archive path relative to the layer root: `.` and leading `/` dropped, `None` when a
/// `..` component appears anywhere.
fn normalize(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => return None,
        }
    }
    Some(out)
}

/// Whether a symlink at `rel` with `target` stays inside the layer root. Absolute targets do
/// (they are resolved against the container's root); relative ones may not climb above it.
fn symlink_stays_inside(rel: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return true;
    }
    let mut depth: usize = rel
        .parent()
        .map(|p| {
            p.components()
                .filter(|c| matches!(c, Component::Normal(_)))
                .count()
        })
        .unwrap_or(0);
    for c in target.components() {
        match c {
            Component::Normal(_) => depth += 1,
            Component::ParentDir => match depth.checked_sub(1) {
                Some(d) => depth = d,
                None => return false,
            },
            _ => {}
        }
    }
    true
}

/// Removes whatever is at `path` (a later entry replaces an earlier one).
fn remove_existing(path: &Path) -> Result<(), UnpackError> {
    let result = match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => Err(e),
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
    };
    result.map_err(|e| io_err(format!("replacing {}", path.display()), e))
}

fn malformed(e: io::Error) -> UnpackError {
    UnpackError::Malformed(e.to_string())
}

fn io_err(context: impl Into<String>, source: io::Error) -> UnpackError {
    UnpackError::Io {
        context: context.into(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

    fn is_root() -> bool {
        // SAFETY: no preconditions.
        unsafe { libc::geteuid() == 0 }
    }

    fn skip_unless_root(test: &str) -> bool {
        if is_root() {
            return false;
        }
        eprintln!("*** SKIPPING {test}: needs root (mknod, trusted.* xattrs, chown)");
        true
    }

    /// A tar entry header for `path` written raw, so paths tar's builder refuses (`..`) can be
    /// made too.
    fn header(path: &str, kind: tar::EntryType, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        let name = &mut h.as_old_mut().name;
        name[..path.len()].copy_from_slice(path.as_bytes());
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(if kind.is_dir() { 0o755 } else { 0o644 });
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        h.set_cksum();
        h
    }

    #[derive(Default)]
    struct TarBuf {
        b: Vec<u8>,
    }

    impl TarBuf {
        fn file(self, path: &str, data: &[u8]) -> Self {
            let h = header(path, tar::EntryType::Regular, data.len() as u64);
            self.raw(h, data)
        }
        fn dir(self, path: &str) -> Self {
            let h = header(path, tar::EntryType::Directory, 0);
            self.raw(h, &[])
        }
        fn link(self, path: &str, target: &str, kind: tar::EntryType) -> Self {
            let mut h = header(path, kind, 0);
            let ln = &mut h.as_old_mut().linkname;
            ln[..target.len()].copy_from_slice(target.as_bytes());
            h.set_cksum();
            self.raw(h, &[])
        }
        fn raw(mut self, h: tar::Header, data: &[u8]) -> Self {
            self.b.extend_from_slice(h.as_bytes());
            self.b.extend_from_slice(data);
            let pad = (512 - data.len() % 512) % 512;
            self.b.extend(std::iter::repeat_n(0u8, pad));
            self
        }
        fn finish(mut self) -> Vec<u8> {
            self.b.extend(std::iter::repeat_n(0u8, 1024));
            self.b
        }
    }

    fn unpack(bytes: &[u8]) -> (tempfile::TempDir, Result<UnpackStats, UnpackError>) {
        let dir = tempfile::tempdir().unwrap();
        let layer = dir.path().join("layer");
        fs::create_dir(&layer).unwrap();
        let r = unpack_layer(bytes, &layer, None, &UnpackOptions::default());
        (dir, r)
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn detects_plain_gzip_and_zstd() {
        let tar = TarBuf::default()
            .dir("etc/")
            .file("etc/hostname", b"skiff\n")
            .finish();
        let want = Digest::of(&tar);
        let zstd = zstd::encode_all(&tar[..], 3).unwrap();
        for (bytes, kind) in [
            (tar.clone(), Compression::None),
            (gzip(&tar), Compression::Gzip),
            (zstd, Compression::Zstd),
        ] {
            let (dir, r) = unpack(&bytes);
            let stats = r.unwrap();
            assert_eq!(stats.compression, kind);
            assert_eq!(stats.diff_id, want, "{kind:?}");
            assert_eq!(stats.uncompressed_size, tar.len() as u64);
            let got = fs::read(dir.path().join("layer/etc/hostname")).unwrap();
            assert_eq!(got, b"skiff\n");
        }
        assert_eq!(
            Compression::from_media_type("application/vnd.oci.image.layer.v1.tar+zstd"),
            Some(Compression::Zstd)
        );
        assert_eq!(
            Compression::from_media_type("application/vnd.docker.image.rootfs.diff.tar.gzip"),
            Some(Compression::Gzip)
        );
    }

    #[test]
    fn whiteout_becomes_char_device_0_0() {
        if skip_unless_root("whiteout_becomes_char_device_0_0") {
            return;
        }
        let tar = TarBuf::default()
            .dir("etc/")
            .file("etc/.wh.motd", b"")
            .file(".wh.tmp", b"")
            .finish();
        let (dir, r) = unpack(&tar);
        assert_eq!(r.unwrap().whiteouts, 2);
        for p in ["layer/etc/motd", "layer/tmp"] {
            let m = fs::symlink_metadata(dir.path().join(p)).unwrap();
            assert!(m.file_type().is_char_device(), "{p}");
            assert_eq!(m.rdev(), 0);
            assert_eq!((m.uid(), m.gid()), (0, 0));
        }
        assert!(!dir.path().join("layer/etc/.wh.motd").exists());
    }

    #[test]
    fn opaque_marker_sets_overlay_xattr() {
        if skip_unless_root("opaque_marker_sets_overlay_xattr") {
            return;
        }
        let tar = TarBuf::default()
            .dir("var/")
            .dir("var/cache/")
            .file("var/cache/.wh..wh..opq", b"")
            .file("var/cache/new", b"x")
            .finish();
        let (dir, r) = unpack(&tar);
        r.unwrap();
        let cache = dir.path().join("layer/var/cache");
        assert_eq!(
            xattr::get(&cache, OPAQUE_XATTR).unwrap().as_deref(),
            Some(&b"y"[..])
        );
        assert!(xattr::get(dir.path().join("layer/var"), OPAQUE_XATTR)
            .unwrap()
            .is_none());
        assert!(!cache.join(".wh..wh..opq").exists());
        assert!(cache.join("new").exists());
    }

    #[test]
    fn dotdot_paths_are_rejected_and_write_nothing_outside() {
        for evil in ["../escape", "a/../../escape", "./../escape"] {
            let tar = TarBuf::default()
                .file("ok", b"1")
                .file(evil, b"pwned")
                .finish();
            let (dir, r) = unpack(&tar);
            assert!(
                matches!(r, Err(UnpackError::PathEscape { .. })),
                "{evil}: {r:?}"
            );
            assert!(!dir.path().join("escape").exists());
        }
    }

    #[test]
    fn absolute_paths_stay_inside_the_layer() {
        let tar = TarBuf::default().file("/abs/file", b"in").finish();
        let (dir, r) = unpack(&tar);
        r.unwrap();
        assert_eq!(fs::read(dir.path().join("layer/abs/file")).unwrap(), b"in");
    }

    #[test]
    fn writes_through_symlinked_parents_are_rejected() {
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().to_str().unwrap().to_string();
        let tar = TarBuf::default()
            .link("evil", &target, tar::EntryType::Symlink)
            .file("evil/pwned", b"x")
            .finish();
        let (_dir, r) = unpack(&tar);
        assert!(matches!(r, Err(UnpackError::PathEscape { .. })), "{r:?}");
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
    }

    #[test]
    fn symlinks_may_be_absolute_but_not_climb_out() {
        let ok = TarBuf::default()
            .dir("bin/")
            .file("bin/busybox", b"elf")
            .link("bin/sh", "/bin/busybox", tar::EntryType::Symlink)
            .link("bin/ls", "busybox", tar::EntryType::Symlink)
            .link("bin/up", "../bin/busybox", tar::EntryType::Symlink)
            .finish();
        let (dir, r) = unpack(&ok);
        r.unwrap();
        assert_eq!(
            fs::read_link(dir.path().join("layer/bin/sh")).unwrap(),
            Path::new("/bin/busybox")
        );
        let bad = TarBuf::default()
            .link("bin/out", "../../etc/passwd", tar::EntryType::Symlink)
            .finish();
        let (_dir, r) = unpack(&bad);
        assert!(
            matches!(
                r,
                Err(UnpackError::LinkEscape {
                    kind: "symlink",
                    ..
                })
            ),
            "{r:?}"
        );
    }

    #[test]
    fn hard_links_inside_work_and_outside_are_rejected() {
        let tar = TarBuf::default()
            .dir("bin/")
            .file("bin/busybox", b"elf")
            .link("bin/sh", "bin/busybox", tar::EntryType::Link)
            .link("bin/ash", "/bin/busybox", tar::EntryType::Link)
            .finish();
        let (dir, r) = unpack(&tar);
        r.unwrap();
        let ino = |p: &str| fs::metadata(dir.path().join(p)).unwrap().ino();
        assert_eq!(ino("layer/bin/sh"), ino("layer/bin/busybox"));
        assert_eq!(ino("layer/bin/ash"), ino("layer/bin/busybox"));

        for target in ["../../etc/passwd", "/../etc/passwd", "/etc/passwd"] {
            let tar = TarBuf::default()
                .link("stolen", target, tar::EntryType::Link)
                .finish();
            let (dir, r) = unpack(&tar);
            assert!(r.is_err(), "{target}: {r:?}");
            assert!(!dir.path().join("layer/stolen").exists());
        }
        // A hard link through a symlinked directory that points out of the layer.
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("secret"), b"s").unwrap();
        let tar = TarBuf::default()
            .link(
                "out",
                outside.path().to_str().unwrap(),
                tar::EntryType::Symlink,
            )
            .link("stolen", "out/secret", tar::EntryType::Link)
            .finish();
        let (dir, r) = unpack(&tar);
        assert!(matches!(r, Err(UnpackError::LinkEscape { .. })), "{r:?}");
        assert!(!dir.path().join("layer/stolen").exists());
    }

    #[test]
    fn keeps_modes_mtimes_ownership_and_xattrs() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_path("usr/bin/tool").unwrap();
        h.set_size(2);
        h.set_mode(0o4750);
        h.set_uid(1234);
        h.set_gid(5678);
        h.set_mtime(1_000_000);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        b.append_pax_extensions([("SCHILY.xattr.user.skiff", &b"yes"[..])])
            .unwrap();
        b.append(&h, &b"hi"[..]).unwrap();
        let mut d = tar::Header::new_gnu();
        d.set_path("usr/").unwrap();
        d.set_entry_type(tar::EntryType::Directory);
        d.set_size(0);
        d.set_uid(0);
        d.set_gid(0);
        d.set_mode(0o711);
        d.set_mtime(2_000_000);
        d.set_cksum();
        b.append(&d, &[][..]).unwrap();
        let tar = b.into_inner().unwrap();
        let (dir, r) = unpack(&tar);
        r.unwrap();
        let p = dir.path().join("layer/usr/bin/tool");
        let m = fs::metadata(&p).unwrap();
        assert_eq!(m.mtime(), 1_000_000);
        let usr = fs::metadata(dir.path().join("layer/usr")).unwrap();
        assert_eq!(usr.mtime(), 2_000_000);
        assert_eq!(usr.permissions().mode() & 0o7777, 0o711);
        assert_eq!(
            xattr::get(&p, "user.skiff").unwrap().as_deref(),
            Some(&b"yes"[..])
        );
        if is_root() {
            assert_eq!((m.uid(), m.gid()), (1234, 5678));
            assert_eq!(m.permissions().mode() & 0o7777, 0o4750);
        }
    }

    #[test]
    fn malformed_archives_are_errors_not_panics() {
        let tar = TarBuf::default().file("a", &[7u8; 5000]).finish();
        let gz = gzip(&tar);
        let cases: Vec<Vec<u8>> = vec![
            b"\x1f\x8bnot really gzip at all".to_vec(),
            b"\x28\xb5\x2f\xfdnot zstd".to_vec(),
            vec![0xff; 700],
            tar[..1500].to_vec(),
            gz[..gz.len() / 2].to_vec(),
        ];
        for (i, bytes) in cases.iter().enumerate() {
            let (_dir, r) = unpack(bytes);
            assert!(r.is_err(), "case {i} unpacked: {r:?}");
        }
        // An empty stream is an empty layer.
        let (_dir, r) = unpack(&[]);
        assert_eq!(r.unwrap().entries, 0);
    }
}
