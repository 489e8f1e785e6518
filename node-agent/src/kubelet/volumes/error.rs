//! Volume errors. Their texts are what the pod's status and events show, so they follow
//! upstream kubelet's wording (`MountVolume.SetUp failed for volume "cfg" : configmap "x" not
//! found`).

use std::io;
use std::path::PathBuf;

use crate::kubelet::downward::DownwardError;

/// Why a pod's volumes could not be set up, mounted or torn down.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// One volume could not be set up; the pod waits and the kubelet retries.
    #[error("MountVolume.SetUp failed for volume \"{volume}\" : {cause}")]
    SetUp {
        /// The volume's name in the pod spec.
        volume: String,
        /// What went wrong.
        #[source]
        cause: SetUpError,
    },
    /// An [`ObjectSource`](super::ObjectSource) could not answer (the API server is
    /// unreachable, say); its implementations return this with their own text.
    #[error("{0}")]
    Source(String),
    /// A container's volumeMount names a volume the pod does not have.
    #[error("cannot find volume \"{volume}\" to mount into container \"{container}\"")]
    UnknownVolume {
        /// The volumeMount's name.
        volume: String,
        /// The container asking for it.
        container: String,
    },
    /// A volumeMount's subPath or subPathExpr is unusable; the text is upstream's.
    #[error("{0}")]
    SubPath(String),
    /// The pod itself lacks what volumes need (a namespace, valid volume names).
    #[error("invalid pod: {0}")]
    InvalidPod(String),
    /// The pod's volume directory could not be made.
    #[error("failed to create pod volume directory {path}: {source}")]
    PodDir {
        /// The directory.
        path: PathBuf,
        /// The underlying failure.
        #[source]
        source: io::Error,
    },
    /// Unmounting or removing a pod's volume directories failed.
    #[error("UnmountVolume.TearDown failed for {path}: {source}")]
    TearDown {
        /// The directory or mount point.
        path: PathBuf,
        /// The underlying failure.
        #[source]
        source: io::Error,
    },
}

impl VolumeError {
    /// Whether the failure is an object (or key) that does not exist yet: a ConfigMap, Secret,
    /// claim or persistent volume, or an unbound claim. The kubelet retries these quietly, as
    /// creating the object later lets the pod start.
    pub fn is_missing_object(&self) -> bool {
        match self {
            VolumeError::SetUp { cause, .. } => cause.is_missing_object(),
            _ => false,
        }
    }

    /// Whether retrying later may succeed without the pod changing: missing objects and
    /// failures to reach the object source.
    pub fn is_retryable(&self) -> bool {
        match self {
            VolumeError::Source(_) => true,
            VolumeError::SetUp { cause, .. } => cause.is_retryable(),
            _ => false,
        }
    }
}

/// What went wrong setting up one volume (the part after `MountVolume.SetUp failed for volume
/// "x" : `).
#[derive(Debug, thiserror::Error)]
pub enum SetUpError {
    /// A non-optional ConfigMap does not exist.
    #[error("configmap \"{0}\" not found")]
    ConfigMapNotFound(String),
    /// A non-optional Secret does not exist.
    #[error("secret \"{0}\" not found")]
    SecretNotFound(String),
    /// The claim does not exist.
    #[error("persistentvolumeclaim \"{0}\" not found")]
    ClaimNotFound(String),
    /// The claim exists but is not bound to a volume yet.
    #[error("persistentvolumeclaim \"{0}\" is not bound")]
    ClaimNotBound(String),
    /// The claim's volume does not exist.
    #[error("persistentvolume \"{0}\" not found")]
    VolumeNotFound(String),
    /// The volume's claimRef names another claim.
    #[error("persistentvolume \"{volume}\" is not bound to persistentvolumeclaim \"{claim}\"")]
    ClaimRefMismatch {
        /// The PersistentVolume.
        volume: String,
        /// The claim that names it.
        claim: String,
    },
    /// A generic ephemeral volume's claim belongs to another pod.
    #[error(
        "PVC {namespace}/{claim} was not created for pod {namespace}/{pod} (pod is not owner)"
    )]
    NotOwner {
        /// The pod's namespace.
        namespace: String,
        /// The claim.
        claim: String,
        /// The pod.
        pod: String,
    },
    /// The claim's volume is of a kind this node cannot mount.
    #[error("persistentvolume \"{0}\" has no hostPath or local source this node can mount")]
    UnsupportedPersistentVolume(String),
    /// A ConfigMap item names a key the ConfigMap lacks.
    #[error("configmap references non-existent config key: {0}")]
    MissingConfigMapKey(String),
    /// A Secret item names a key the Secret lacks.
    #[error("secret references non-existent secret key: {0}")]
    MissingSecretKey(String),
    /// A hostPath's file type is not the one asked for; `expected` is "a directory" and so on.
    #[error("hostPath type check failed: {path} is not {expected}")]
    HostPathType {
        /// The host path.
        path: String,
        /// What it should have been.
        expected: &'static str,
    },
    /// A hostPath type outside the API's enumeration.
    #[error("{0} is an invalid volume type")]
    InvalidHostPathType(String),
    /// A downwardAPI item's value could not be computed.
    #[error(transparent)]
    Downward(#[from] DownwardError),
    /// The object source failed.
    #[error("{0}")]
    Source(String),
    /// A file path in the volume's items is not acceptable (absolute, `..`).
    #[error("{0}")]
    InvalidPath(String),
    /// A `securityContext.fsGroup` that is not a group id.
    #[error("fsGroup {0} is out of range")]
    InvalidFsGroup(i64),
    /// A volume kind this node does not provide.
    #[error("no volume plugin matched: {0}")]
    Unsupported(String),
    /// A filesystem or mount operation failed.
    #[error("{what}: {source}")]
    Io {
        /// The operation and path.
        what: String,
        /// The underlying failure.
        #[source]
        source: io::Error,
    },
    /// Several sources of a projected volume failed (upstream's aggregate `[a, b]`).
    #[error("[{}]", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join(", "))]
    Aggregate(Vec<SetUpError>),
}

impl SetUpError {
    /// Whether a missing object or key caused it (see [`VolumeError::is_missing_object`]).
    pub fn is_missing_object(&self) -> bool {
        match self {
            SetUpError::ConfigMapNotFound(_)
            | SetUpError::SecretNotFound(_)
            | SetUpError::ClaimNotFound(_)
            | SetUpError::ClaimNotBound(_)
            | SetUpError::VolumeNotFound(_)
            | SetUpError::MissingConfigMapKey(_)
            | SetUpError::MissingSecretKey(_) => true,
            SetUpError::Aggregate(all) => all.iter().any(SetUpError::is_missing_object),
            _ => false,
        }
    }

    /// Whether retrying later may help (see [`VolumeError::is_retryable`]).
    pub fn is_retryable(&self) -> bool {
        match self {
            SetUpError::Source(_) => true,
            SetUpError::Aggregate(all) => all.iter().any(SetUpError::is_retryable),
            e => e.is_missing_object(),
        }
    }

    /// An I/O failure with the operation and path it happened on.
    pub(crate) fn io(what: impl Into<String>, source: io::Error) -> Self {
        SetUpError::Io {
            what: what.into(),
            source,
        }
    }

    /// An object source's failure, without repeating an enclosing `MountVolume.SetUp` prefix.
    pub(crate) fn from_source(e: VolumeError) -> Self {
        match e {
            VolumeError::SetUp { cause, .. } => cause,
            other => SetUpError::Source(other.to_string()),
        }
    }
}
