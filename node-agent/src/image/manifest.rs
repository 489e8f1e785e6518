//! The distribution documents the store reads: image manifests, image indexes (manifest lists)
//! and their descriptors, in both OCI and Docker schema 2 spellings, and the choice of the
//! linux/<arch> entry of an index.
//!
//! These are our own lenient serde types rather than `oci_spec`'s builders: registries and
//! `docker save` differ in small ways (Docker media types, missing optional fields), and only a
//! few fields matter here. The image *configuration* is `oci_spec`'s, as the runtime uses it.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::digest::Digest;
use super::error::ImageError;

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker schema 2 manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker schema 2 manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image configuration.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker uncompressed layer (what `docker save` holds).
pub const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";
/// Docker gzip layer.
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// Media types a pull accepts for a manifest, in the `Accept` header.
pub const ACCEPTED_MANIFESTS: &[&str] = &[
    OCI_MANIFEST,
    OCI_INDEX,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
];

/// Largest manifest or index accepted (the distribution spec suggests 4 MiB).
pub const MAX_MANIFEST_BYTES: usize = 4 << 20;
/// Largest image configuration accepted.
pub const MAX_CONFIG_BYTES: u64 = 8 << 20;

/// A content descriptor: what a manifest says about a blob.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// The blob's media type.
    #[serde(default)]
    pub media_type: String,
    /// `sha256:<hex>`.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
    /// For index entries: the platform of the manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// Free-form annotations (OCI layouts name images here).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Descriptor {
    /// The validated digest.
    pub fn digest(&self) -> Result<Digest, ImageError> {
        Digest::parse(&self.digest)
    }
}

/// os/architecture/variant of an index entry.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Platform {
    /// e.g. `amd64`.
    #[serde(default)]
    pub architecture: String,
    /// e.g. `linux`.
    #[serde(default)]
    pub os: String,
    /// e.g. `v8` for arm64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// An image manifest (OCI or Docker schema 2).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Always 2.
    pub schema_version: u32,
    /// OCI's is optional; Docker's is always there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The image configuration blob.
    pub config: Descriptor,
    /// Layer blobs, bottom first.
    pub layers: Vec<Descriptor>,
}

/// An image index / manifest list.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    /// Always 2.
    pub schema_version: u32,
    /// Optional in OCI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// One entry per platform (or per image, in an OCI layout's index.json).
    pub manifests: Vec<Descriptor>,
}

/// What a manifest document turned out to be.
pub enum Document {
    /// A single image.
    Manifest(Manifest),
    /// A list of images, one per platform.
    Index(Index),
}

/// Parses a manifest or index. The media type comes from the document itself or, failing
/// that, the HTTP `Content-Type`/descriptor; an OCI index without either is recognised by its
/// `manifests` array.
pub fn parse_document(bytes: &[u8], media_type_hint: Option<&str>) -> Result<Document, ImageError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        schema_version: Option<u32>,
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
        layers: Option<serde_json::Value>,
    }
    let probe: Probe =
        serde_json::from_slice(bytes).map_err(|e| ImageError::malformed("manifest", e))?;
    if probe.schema_version != Some(2) {
        return Err(ImageError::malformed(
            "manifest",
            format!(
                "schemaVersion {:?} is not supported (only 2)",
                probe.schema_version
            ),
        ));
    }
    let media_type = probe
        .media_type
        .clone()
        .or_else(|| media_type_hint.map(str::to_string));
    let is_index = match media_type.as_deref() {
        Some(OCI_INDEX) | Some(DOCKER_MANIFEST_LIST) => true,
        Some(OCI_MANIFEST) | Some(DOCKER_MANIFEST) => false,
        Some(other) if probe.manifests.is_none() && probe.layers.is_none() => {
            return Err(ImageError::malformed(
                "manifest",
                format!("unsupported media type {other}"),
            ))
        }
        _ => probe.manifests.is_some() && probe.layers.is_none(),
    };
    if is_index {
        let index: Index =
            serde_json::from_slice(bytes).map_err(|e| ImageError::malformed("image index", e))?;
        Ok(Document::Index(index))
    } else {
        let manifest: Manifest = serde_json::from_slice(bytes)
            .map_err(|e| ImageError::malformed("image manifest", e))?;
        manifest.config.digest()?;
        for l in &manifest.layers {
            l.digest()?;
        }
        Ok(Document::Manifest(manifest))
    }
}

/// This machine's architecture in OCI/Go terms.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "loongarch64" => "loong64",
        other => other,
    }
}

/// Picks the linux/`arch` entry of an index. When several match, the one whose variant is the
/// usual one for the architecture (arm64 → v8, arm → v7) or unset wins; otherwise the first.
pub fn select_platform<'a>(index: &'a Index, arch: &str) -> Option<&'a Descriptor> {
    let candidates: Vec<&Descriptor> = index
        .manifests
        .iter()
        .filter(|d| {
            d.platform
                .as_ref()
                .is_some_and(|p| p.os == "linux" && p.architecture == arch)
        })
        .collect();
    let preferred_variant = match arch {
        "arm64" => Some("v8"),
        "arm" => Some("v7"),
        _ => None,
    };
    candidates
        .iter()
        .find(|d| {
            let v = d.platform.as_ref().and_then(|p| p.variant.as_deref());
            v.is_none() || v == preferred_variant
        })
        .or_else(|| candidates.first())
        .copied()
}

/// "linux/amd64, linux/arm64/v8, ..." for error messages.
pub fn describe_platforms(index: &Index) -> String {
    let list: Vec<String> = index
        .manifests
        .iter()
        .map(|d| match &d.platform {
            Some(p) => match &p.variant {
                Some(v) => format!("{}/{}/{}", p.os, p.architecture, v),
                None => format!("{}/{}", p.os, p.architecture),
            },
            None => "unknown".to_string(),
        })
        .collect();
    if list.is_empty() {
        "nothing".to_string()
    } else {
        list.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(os: &str, arch: &str, variant: Option<&str>, n: u8) -> Descriptor {
        Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: format!("sha256:{}", hex::encode([n; 32])),
            size: 1,
            platform: Some(Platform {
                architecture: arch.into(),
                os: os.into(),
                variant: variant.map(Into::into),
            }),
            annotations: Default::default(),
        }
    }

    #[test]
    fn picks_linux_entry_for_arch() {
        let index = Index {
            schema_version: 2,
            media_type: Some(OCI_INDEX.into()),
            manifests: vec![
                entry("windows", "amd64", None, 1),
                entry("linux", "arm", Some("v6"), 2),
                entry("linux", "arm", Some("v7"), 3),
                entry("linux", "amd64", None, 4),
                entry("linux", "arm64", Some("v8"), 5),
            ],
        };
        assert_eq!(
            select_platform(&index, "amd64").unwrap().digest,
            entry("", "", None, 4).digest
        );
        assert_eq!(
            select_platform(&index, "arm").unwrap().digest,
            entry("", "", None, 3).digest
        );
        assert_eq!(
            select_platform(&index, "arm64").unwrap().digest,
            entry("", "", None, 5).digest
        );
        assert!(select_platform(&index, "s390x").is_none());
        assert!(describe_platforms(&index).contains("linux/arm/v6"));
    }

    #[test]
    fn tells_index_from_manifest() {
        let index = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert!(matches!(
            parse_document(index, None),
            Ok(Document::Index(_))
        ));
        let d = format!("sha256:{}", "a".repeat(64));
        let manifest = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{d}","size":2}},"layers":[]}}"#
        );
        assert!(matches!(
            parse_document(manifest.as_bytes(), None),
            Ok(Document::Manifest(_))
        ));
        let bad_digest = manifest.replace(&d, "sha256:../../x");
        assert!(parse_document(bad_digest.as_bytes(), None).is_err());
        assert!(parse_document(br#"{"schemaVersion":1}"#, None).is_err());
        assert!(parse_document(b"not json", None).is_err());
    }
}
