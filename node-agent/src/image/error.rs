//! The image store's error type: one enum, so callers (the CLI, later the kubelet loop's
//! `ErrImagePull` reasons) can tell a bad reference from a refused login from a full disk.

use std::io;
use thiserror::Error;

use super::unpack::UnpackError;

/// Everything that can go wrong pulling, importing, reading or removing images.
#[derive(Debug, Error)]
pub enum ImageError {
    /// The reference does not parse (e.g. upper case in the repository, a bad tag or digest).
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference {
        /// What was given.
        reference: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A digest that is not `sha256:<64 hex>`.
    #[error("invalid digest {0:?}: expected sha256:<64 hex characters>")]
    InvalidDigest(String),
    /// The registry answered 401 to an anonymous request.
    #[error("registry {registry} requires authentication to pull {reference}")]
    AuthRequired {
        /// host[:port] of the registry.
        registry: String,
        /// The image asked for.
        reference: String,
    },
    /// The registry answered 401 although credentials were sent.
    #[error("registry {registry} refused the credentials given for {reference}")]
    CredentialsRefused {
        /// host[:port] of the registry.
        registry: String,
        /// The image asked for.
        reference: String,
    },
    /// The registry has no such repository, tag or digest.
    #[error("{reference} was not found in registry {registry} ({detail})")]
    NotFound {
        /// The image asked for.
        reference: String,
        /// host[:port] of the registry.
        registry: String,
        /// The registry's own words.
        detail: String,
    },
    /// The registry could not be reached (DNS, connection refused, TLS, timeout).
    #[error("cannot reach registry {registry}: {detail}")]
    Unreachable {
        /// host[:port] of the registry.
        registry: String,
        /// What failed, with its causes.
        detail: String,
    },
    /// Any other error answer from the registry.
    #[error("registry {registry}: {detail}")]
    Registry {
        /// host[:port] of the registry.
        registry: String,
        /// The error, with its causes.
        detail: String,
    },
    /// A multi-platform image without a linux image for this machine's architecture.
    #[error("{reference} has no image for linux/{arch} (it has: {available})")]
    NoMatchingPlatform {
        /// The image asked for.
        reference: String,
        /// This machine's architecture, in OCI terms (amd64, arm64, ...).
        arch: String,
        /// The platforms the index lists.
        available: String,
    },
    /// A manifest, index or config that is not what the OCI/Docker specs describe.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// Which document.
        what: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Content whose hash is not the digest it was fetched or listed under.
    #[error("{what} should have digest {expected} but has {actual}")]
    DigestMismatch {
        /// Which blob or layer.
        what: String,
        /// The digest it was listed under.
        expected: String,
        /// The digest of the bytes received.
        actual: String,
    },
    /// Content larger than its descriptor says, or than the store accepts for its kind.
    #[error("{what} is larger than {limit} bytes")]
    TooLarge {
        /// Which blob.
        what: String,
        /// The size it may not exceed.
        limit: u64,
    },
    /// A layer could not be unpacked.
    #[error("unpacking layer {layer}: {source}")]
    Unpack {
        /// The layer's blob digest.
        layer: String,
        /// Why.
        #[source]
        source: UnpackError,
    },
    /// The reference is not in the local store.
    #[error("image {0} is not in the store")]
    NotPresent(String),
    /// `import` was given a file that is neither a `docker save` tarball nor an OCI layout.
    #[error("{path}: not an image archive ({reason}); expected `docker save` output or an OCI image layout (oci-layout, index.json, blobs/)")]
    NotAnArchive {
        /// The file given.
        path: String,
        /// What is missing or wrong.
        reason: String,
    },
    /// A file system operation on the store failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, naming the path.
        context: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

impl ImageError {
    /// An `Io` error that says what was being done.
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> ImageError {
        ImageError::Io {
            context: context.into(),
            source,
        }
    }

    /// A `Malformed` error.
    pub(crate) fn malformed(what: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        ImageError::Malformed {
            what: what.into(),
            reason: reason.to_string(),
        }
    }
}

/// `result.ctx(|| format!(...))` turns an `io::Error` into `ImageError::Io` with context.
pub(crate) trait IoContext<T> {
    /// Adds what was being done to an I/O error.
    fn ctx<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T, ImageError>;
}

impl<T> IoContext<T> for Result<T, io::Error> {
    fn ctx<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T, ImageError> {
        self.map_err(|e| ImageError::io(what(), e))
    }
}
