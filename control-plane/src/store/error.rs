//! Store errors, spelled as etcd spells them so etcd clients map them to their typed errors.

use tonic::{Code, Status};

/// Why a store request failed. The messages match etcd's `rpctypes` so etcd clients recognise them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted { compact_revision: i64 },
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRevision,
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    #[error("etcdserver: key not found")]
    KeyNotFound,
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    #[error("etcdserver: lease already exists")]
    LeaseExists,
    #[error("etcdserver: request is too large")]
    TooLarge,
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    #[error("etcdserver: {0}")]
    InvalidArgument(String),
    #[error("etcdserver: no leader")]
    NoLeader,
    #[error("etcdserver: request timed out")]
    Timeout,
    #[error("etcdserver: leader changed")]
    LeaderChanged,
    #[error("etcdserver: member not found")]
    MemberNotFound,
    #[error("etcdserver: peerURL exists")]
    PeerUrlExists,
    #[error("etcdserver: can only promote a learner member")]
    NotLearner,
    #[error("etcdserver: unhealthy cluster")]
    Unhealthy,
    #[error("etcdserver: server stopped")]
    Stopped,
    #[error("etcdserver: too many requests")]
    TooManyRequests,
    #[error("etcdserver: storage failure: {0}")]
    Storage(String),
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        StoreError::Storage(e.to_string())
    }
}

impl From<StoreError> for Status {
    fn from(e: StoreError) -> Status {
        let code = match &e {
            StoreError::Compacted { .. } | StoreError::FutureRevision => Code::OutOfRange,
            StoreError::EmptyKey
            | StoreError::KeyNotFound
            | StoreError::TooLarge
            | StoreError::DuplicateKey
            | StoreError::TooManyOps
            | StoreError::InvalidArgument(_) => Code::InvalidArgument,
            StoreError::LeaseNotFound | StoreError::MemberNotFound => Code::NotFound,
            StoreError::LeaseExists | StoreError::PeerUrlExists | StoreError::NotLearner => {
                Code::FailedPrecondition
            }
            StoreError::NoLeader
            | StoreError::Timeout
            | StoreError::LeaderChanged
            | StoreError::Unhealthy
            | StoreError::Stopped => Code::Unavailable,
            StoreError::TooManyRequests => Code::ResourceExhausted,
            StoreError::Storage(_) => Code::Internal,
        };
        Status::new(code, e.to_string())
    }
}
