//! The node's image store: pulls images from OCI registries (or imports `docker save` / OCI
//! layout archives), keeps blobs content-addressed on disk, unpacks layers once for overlayfs,
//! and hands the runtime an `Image`: its configuration and its layer directories.
//!
//! | module | job |
//! |---|---|
//! | `reference` | parsing and normalising references; loopback registries are plain HTTP |
//! | `manifest` | manifests, indexes, descriptors; choosing linux/<arch> from an index |
//! | `digest` | `sha256:` digests, hashing while streaming |
//! | `pull` | registry pulls with oci-client: auth, streamed and verified blobs, progress |
//! | `import` | `docker save` tarballs and OCI layouts from files |
//! | `unpack` | one layer tarball → a directory (whiteouts, opaque dirs, no path escapes) |
//! | `store` | the on-disk layout, locking, `list`/`get`/`remove`/`garbage_collect` |
//! | `index` | the atomically replaced index of images |
//! | `policy` | `imagePullPolicy` decisions |

mod digest;
mod error;
mod import;
mod index;
mod manifest;
mod policy;
mod pull;
mod reference;
mod store;
pub mod unpack;

pub use digest::Digest;
pub use error::ImageError;
pub use manifest::host_arch;
pub use policy::{decide, PullDecision, PullPolicy};
pub use pull::{Auth, ProgressFn, PullOptions, PullProgress};
pub use reference::{is_loopback_registry, parse as parse_reference};
pub use store::{GcReport, Image, ImageInfo, ImageStore, RemoveReport, DEFAULT_ROOT};
pub use unpack::{unpack_layer, Compression, UnpackError, UnpackOptions, UnpackStats};

/// The OCI image configuration type, re-exported so the runtime names the same `oci_spec`
/// (the one libcontainer 0.7 re-exports).
pub use oci_spec::image::ImageConfiguration;
