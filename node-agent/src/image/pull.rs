//! Pulling from an OCI distribution (v2) registry with `oci-client`.
//!
//! Not `Client::pull`, which holds every layer in memory: the manifest (resolved to
//! linux/<host arch> when it is an index) and the config are fetched, then each layer blob is
//! streamed to a temp file in the store while it is hashed, checked against its digest and
//! size, renamed into place and unpacked. Blobs and layers already in the store are not
//! fetched or unpacked again. Registries on loopback addresses are spoken to over plain HTTP.

use futures::StreamExt;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use std::fmt;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tracing::Instrument;

use super::digest::{Digest, Hasher};
use super::error::{ImageError, IoContext};
use super::index::{ImageRecord, LayerRecord};
use super::manifest::{
    describe_platforms, host_arch, parse_document, select_platform, Descriptor, Document, Manifest,
    ACCEPTED_MANIFESTS, DOCKER_MANIFEST, MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES, OCI_MANIFEST,
};
use super::reference;
use super::store::{now_secs, Image, ImageStore, TempPath};

/// Registry credentials. `imagePullSecrets` map onto this: `auth`/`username`+`password` to
/// `Basic`, `registrytoken`/`identitytoken` to `Bearer`.
#[derive(Clone, Default)]
pub enum Auth {
    /// No credentials (a bearer token is still fetched anonymously when the registry asks).
    #[default]
    Anonymous,
    /// HTTP basic auth, or the credentials for a token server's basic challenge.
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: String,
    },
    /// A bearer token sent as is.
    Bearer {
        /// The token.
        token: String,
    },
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::Anonymous => write!(f, "Anonymous"),
            Auth::Basic { username, .. } => write!(f, "Basic({username}, <redacted>)"),
            Auth::Bearer { .. } => write!(f, "Bearer(<redacted>)"),
        }
    }
}

impl Auth {
    fn to_registry_auth(&self) -> RegistryAuth {
        match self {
            Auth::Anonymous => RegistryAuth::Anonymous,
            Auth::Basic { username, password } => {
                RegistryAuth::Basic(username.clone(), password.clone())
            }
            Auth::Bearer { token } => RegistryAuth::Bearer(token.clone()),
        }
    }
}

/// How to pull.
#[derive(Clone, Debug)]
pub struct PullOptions {
    /// Credentials for the image's registry.
    pub auth: Auth,
    /// Registries (host[:port]) to speak plain HTTP to besides loopback ones.
    pub insecure_registries: Vec<String>,
    /// Time allowed to connect.
    pub connect_timeout: Duration,
    /// Time allowed between two reads of a response.
    pub read_timeout: Duration,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            auth: Auth::Anonymous,
            insecure_registries: Vec::new(),
            connect_timeout: Duration::from_secs(15),
            read_timeout: Duration::from_secs(60),
        }
    }
}

/// Progress of a pull, for the CLI's output and, later, pod events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PullProgress {
    /// The manifest is known.
    Resolved {
        /// Normalised reference.
        reference: String,
        /// Manifest digest (of the linux/<arch> image when the reference named an index).
        digest: String,
        /// Number of layers.
        layers: usize,
    },
    /// Bytes of a layer blob received so far (sent at the start, about every MiB, and at
    /// the end).
    Downloading {
        /// The layer's blob digest.
        layer: String,
        /// Bytes received.
        done: u64,
        /// Bytes expected.
        total: u64,
    },
    /// The layer blob was already in the store: not downloaded.
    AlreadyPresent {
        /// The layer's blob digest.
        layer: String,
        /// Its size.
        total: u64,
    },
    /// The layer is unpacked (`reused`: it already was, from another image or pull).
    Unpacked {
        /// The layer's blob digest.
        layer: String,
        /// Whether an existing unpacked copy was used.
        reused: bool,
    },
    /// The image is in the store.
    Done {
        /// Normalised reference.
        reference: String,
        /// Manifest digest.
        digest: String,
    },
}

/// The progress callback. It runs on the pulling task: keep it quick.
pub type ProgressFn = dyn Fn(PullProgress) + Send + Sync;

/// How often `Downloading` is reported.
const PROGRESS_STEP: u64 = 1 << 20;

impl ImageStore {
    /// Pulls `reference` (e.g. `busybox`, `127.0.0.1:5000/app:v1`, `repo@sha256:...`) into the
    /// store and returns it ready to run.
    pub async fn pull(
        &self,
        reference: &str,
        opts: &PullOptions,
        progress: &ProgressFn,
    ) -> Result<Image, ImageError> {
        let parsed = reference::parse(reference)?;
        let span = tracing::info_span!("image_pull", image = %parsed.whole());
        self.pull_parsed(parsed, opts, progress)
            .instrument(span)
            .await
    }

    async fn pull_parsed(
        &self,
        reference: Reference,
        opts: &PullOptions,
        progress: &ProgressFn,
    ) -> Result<Image, ImageError> {
        let pull = Puller::new(self, &reference, opts)?;
        pull.client
            .auth(&reference, &pull.auth, RegistryOperation::Pull)
            .await
            .map_err(|e| pull.error(e))?;

        let store = self.clone();
        let _lock = blocking(move || store.lock_shared()).await?;

        let (manifest, manifest_bytes, manifest_digest) = pull.manifest().await?;
        let manifest_media_type = manifest
            .media_type
            .clone()
            .unwrap_or_else(|| OCI_MANIFEST.to_string());
        if manifest_media_type != OCI_MANIFEST && manifest_media_type != DOCKER_MANIFEST {
            return Err(ImageError::malformed(
                format!("manifest of {}", reference.whole()),
                format!("media type {manifest_media_type} is not an image manifest"),
            ));
        }
        progress(PullProgress::Resolved {
            reference: reference.whole(),
            digest: manifest_digest.to_string(),
            layers: manifest.layers.len(),
        });

        // The config: small, read whole after it is stored.
        let config_digest = manifest.config.digest()?;
        if manifest.config.size > MAX_CONFIG_BYTES {
            return Err(ImageError::TooLarge {
                what: format!("image config {config_digest}"),
                limit: MAX_CONFIG_BYTES,
            });
        }
        if !self.has_blob(&config_digest) {
            pull.download(&manifest.config, None).await?;
        }
        let store = self.clone();
        let cd = config_digest.clone();
        let n = manifest.layers.len();
        let config = blocking(move || store.read_config(&cd, n)).await?;
        let diff_ids = config.rootfs().diff_ids();
        if config.architecture().to_string() != host_arch() {
            tracing::warn!(arch = %config.architecture(), host = host_arch(), "image is for another architecture");
        }

        let mut layers = Vec::with_capacity(manifest.layers.len());
        for (desc, diff_id) in manifest.layers.iter().zip(diff_ids) {
            let blob = desc.digest()?;
            let diff_id = Digest::parse(diff_id)?;
            if self.has_blob(&blob) {
                progress(PullProgress::AlreadyPresent {
                    layer: blob.to_string(),
                    total: desc.size,
                });
            } else {
                pull.download(desc, Some(progress)).await?;
            }
            let store = self.clone();
            let (b, d, mt) = (blob.clone(), diff_id.clone(), desc.media_type.clone());
            let fresh = blocking(move || store.ensure_layer(&b, &d, &mt)).await?;
            progress(PullProgress::Unpacked {
                layer: blob.to_string(),
                reused: !fresh,
            });
            layers.push(LayerRecord {
                digest: blob.to_string(),
                diff_id: diff_id.to_string(),
                media_type: desc.media_type.clone(),
                size: desc.size,
            });
        }

        let now = now_secs();
        let record = ImageRecord {
            reference: reference.whole(),
            manifest_digest: manifest_digest.to_string(),
            manifest_media_type,
            config_digest: config_digest.to_string(),
            size: manifest.config.size + layers.iter().map(|l| l.size).sum::<u64>(),
            layers,
            created: now,
            last_used: now,
        };
        let store = self.clone();
        let md = manifest_digest.clone();
        let image = blocking(move || {
            store.write_blob_bytes(&manifest_bytes, Some(&md), "manifest")?;
            store.record(record.clone())?;
            store.image_from_record(&record)
        })
        .await?;
        tracing::debug!(digest = %manifest_digest, "image pulled");
        progress(PullProgress::Done {
            reference: image.reference.clone(),
            digest: image.digest.clone(),
        });
        Ok(image)
    }
}

/// One pull's client and context.
struct Puller<'a> {
    store: &'a ImageStore,
    client: Client,
    reference: &'a Reference,
    auth: RegistryAuth,
    registry: String,
    has_credentials: bool,
}

impl<'a> Puller<'a> {
    fn new(
        store: &'a ImageStore,
        reference: &'a Reference,
        opts: &PullOptions,
    ) -> Result<Self, ImageError> {
        let registry = reference.resolve_registry().to_string();
        let plain_http = reference::is_loopback_registry(&registry)
            || opts.insecure_registries.contains(&registry);
        let config = ClientConfig {
            protocol: if plain_http {
                ClientProtocol::HttpsExcept(vec![registry.clone()])
            } else {
                ClientProtocol::Https
            },
            connect_timeout: Some(opts.connect_timeout),
            read_timeout: Some(opts.read_timeout),
            // Platform choice is ours (select_platform), never oci-client's.
            platform_resolver: None,
            ..ClientConfig::default()
        };
        // The HTTP client's TLS uses the process-wide rustls provider; the first caller installs
        // ring, the one provider the workspace links.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = Client::try_from(config).map_err(|e| ImageError::Registry {
            registry: registry.clone(),
            detail: format!("setting up the HTTP client: {e}"),
        })?;
        Ok(Puller {
            store,
            client,
            reference,
            auth: opts.auth.to_registry_auth(),
            has_credentials: !matches!(opts.auth, Auth::Anonymous),
            registry,
        })
    }

    /// Fetches the manifest, resolving an index to this platform's entry. Returns the
    /// manifest, its exact bytes and their digest.
    async fn manifest(&self) -> Result<(Manifest, Vec<u8>, Digest), ImageError> {
        let (bytes, _) = self
            .client
            .pull_manifest_raw(self.reference, &self.auth, ACCEPTED_MANIFESTS)
            .await
            .map_err(|e| self.error(e))?;
        let digest = self.check_manifest(&bytes, self.reference.digest())?;
        match parse_document(&bytes, None)? {
            Document::Manifest(m) => Ok((m, bytes.to_vec(), digest)),
            Document::Index(index) => {
                let arch = host_arch();
                let entry = select_platform(&index, arch).ok_or_else(|| {
                    ImageError::NoMatchingPlatform {
                        reference: self.reference.whole(),
                        arch: arch.to_string(),
                        available: describe_platforms(&index),
                    }
                })?;
                entry.digest()?;
                tracing::debug!(digest = %entry.digest, arch, "index resolved");
                let by_digest = self.reference.clone_with_digest(entry.digest.clone());
                let (bytes, _) = self
                    .client
                    .pull_manifest_raw(&by_digest, &self.auth, ACCEPTED_MANIFESTS)
                    .await
                    .map_err(|e| self.error(e))?;
                let digest = self.check_manifest(&bytes, Some(&entry.digest))?;
                match parse_document(&bytes, Some(&entry.media_type))? {
                    Document::Manifest(m) => Ok((m, bytes.to_vec(), digest)),
                    Document::Index(_) => Err(ImageError::malformed(
                        format!("image index of {}", self.reference.whole()),
                        "its linux entry is another index",
                    )),
                }
            }
        }
    }

    fn check_manifest(&self, bytes: &[u8], expected: Option<&str>) -> Result<Digest, ImageError> {
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(ImageError::TooLarge {
                what: format!("manifest of {}", self.reference.whole()),
                limit: MAX_MANIFEST_BYTES as u64,
            });
        }
        let digest = Digest::of(bytes);
        if let Some(want) = expected {
            if Digest::parse(want)? != digest {
                return Err(ImageError::DigestMismatch {
                    what: format!("manifest of {}", self.reference.whole()),
                    expected: want.to_string(),
                    actual: digest.to_string(),
                });
            }
        }
        Ok(digest)
    }

    /// Streams one blob into the store, hashing it, and moves it into place once its size
    /// and digest check out.
    async fn download(
        &self,
        desc: &Descriptor,
        progress: Option<&ProgressFn>,
    ) -> Result<(), ImageError> {
        let digest = desc.digest()?;
        let oci_desc = OciDescriptor {
            media_type: desc.media_type.clone(),
            digest: digest.to_string(),
            size: i64::try_from(desc.size).unwrap_or(i64::MAX),
            ..OciDescriptor::default()
        };
        let mut stream = self
            .client
            .pull_blob_stream(self.reference, &oci_desc)
            .await
            .map_err(|e| self.error(e))?;
        let mut tmp = TempPath::new(self.store.temp_path("blob"));
        let mut file = tokio::fs::File::create(tmp.path())
            .await
            .ctx(|| format!("creating {}", tmp.path().display()))?;
        let mut hasher = Hasher::default();
        let report = |done: u64| {
            if let Some(p) = progress {
                p(PullProgress::Downloading {
                    layer: digest.to_string(),
                    done,
                    total: desc.size,
                });
            }
        };
        report(0);
        let mut next_report = PROGRESS_STEP;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| ImageError::Registry {
                registry: self.registry.clone(),
                detail: format!("downloading blob {digest}: {}", error_chain(&e)),
            })?;
            if hasher.len() + chunk.len() as u64 > desc.size {
                return Err(ImageError::TooLarge {
                    what: format!("blob {digest} (its manifest says {} bytes)", desc.size),
                    limit: desc.size,
                });
            }
            hasher.update(&chunk);
            file.write_all(&chunk)
                .await
                .ctx(|| format!("writing {}", tmp.path().display()))?;
            if hasher.len() >= next_report {
                report(hasher.len());
                next_report = hasher.len() + PROGRESS_STEP;
            }
        }
        file.sync_all()
            .await
            .ctx(|| format!("writing {}", tmp.path().display()))?;
        drop(file);
        if hasher.len() != desc.size {
            return Err(ImageError::Registry {
                registry: self.registry.clone(),
                detail: format!(
                    "blob {digest} ended after {} of {} bytes",
                    hasher.len(),
                    desc.size
                ),
            });
        }
        if hasher.len() < next_report {
            report(hasher.len());
        }
        let actual = hasher.finish();
        if actual != digest {
            return Err(ImageError::DigestMismatch {
                what: format!("blob from {}", self.registry),
                expected: digest.to_string(),
                actual: actual.to_string(),
            });
        }
        let store = self.store.clone();
        blocking(move || store.commit_blob(&mut tmp, &digest)).await
    }

    /// Turns oci-client's errors into ones that say what to do.
    fn error(&self, e: OciDistributionError) -> ImageError {
        let registry = self.registry.clone();
        let reference = self.reference.whole();
        let unauthorized = || {
            if self.has_credentials {
                ImageError::CredentialsRefused {
                    registry: registry.clone(),
                    reference: reference.clone(),
                }
            } else {
                ImageError::AuthRequired {
                    registry: registry.clone(),
                    reference: reference.clone(),
                }
            }
        };
        match e {
            OciDistributionError::UnauthorizedError { .. }
            | OciDistributionError::AuthenticationFailure(_) => unauthorized(),
            OciDistributionError::ImageManifestNotFoundError(detail) => ImageError::NotFound {
                reference,
                registry,
                detail,
            },
            OciDistributionError::RegistryError { envelope, .. } => {
                let detail = envelope
                    .errors
                    .iter()
                    .map(|e| format!("{:?}: {}", e.code, e.message))
                    .collect::<Vec<_>>()
                    .join("; ");
                let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
                if codes.iter().any(|c| {
                    matches!(
                        c,
                        OciErrorCode::ManifestUnknown
                            | OciErrorCode::NameUnknown
                            | OciErrorCode::BlobUnknown
                            | OciErrorCode::NotFound
                    )
                }) {
                    ImageError::NotFound {
                        reference,
                        registry,
                        detail,
                    }
                } else if codes
                    .iter()
                    .any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied))
                {
                    unauthorized()
                } else {
                    ImageError::Registry { registry, detail }
                }
            }
            OciDistributionError::ServerError {
                code: 404, message, ..
            } => ImageError::NotFound {
                reference,
                registry,
                detail: message.chars().take(200).collect(),
            },
            OciDistributionError::ServerError {
                code: 401 | 403, ..
            } => unauthorized(),
            OciDistributionError::RequestError(e) => ImageError::Unreachable {
                registry,
                detail: error_chain(&e),
            },
            OciDistributionError::DigestError(e) => ImageError::DigestMismatch {
                what: format!("content from {registry}"),
                expected: String::new(),
                actual: e.to_string(),
            },
            other => ImageError::Registry {
                registry,
                detail: error_chain(&other),
            },
        }
    }
}

/// "outer: cause: root cause" (reqwest's Display alone hides "connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let cs = c.to_string();
        if !s.contains(&cs) {
            s.push_str(": ");
            s.push_str(&cs);
        }
        cur = c.source();
    }
    s
}

/// Runs file-system work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ImageError> + Send + 'static,
) -> Result<T, ImageError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ImageError::io("image store task", std::io::Error::other(e.to_string())))?
}
