//! Wire protocols of skiff.
//!
//! * [`mvccpb`] and [`etcdserverpb`]: the etcd v3 gRPC API, wire-compatible
//!   with etcd so unmodified etcd clients (etcdctl, Go clientv3, the
//!   Kubernetes API server) can use skiff's store.
//! * [`store`] (`skiff.store.v1`): commands replicated through the Raft log.
//! * [`raft`] (`skiff.raft.v1`): the member-to-member transport.
//! * [`agent`] (`skiff.agent.v1`): the node agent's streams (logs, exec, port-forward) that the API server calls.
//!
//! Modules are nested to mirror the protobuf package names, because prost
//! resolves cross-package references with relative `super::` paths; the
//! short aliases [`store`] and [`raft`] are re-exported for convenience.

/// etcd's `mvccpb` package: key-value pairs and watch events, shared by the
/// KV and Watch APIs.
#[allow(clippy::all, missing_docs)]
pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}

/// etcd's `etcdserverpb` package: the KV, Watch, Lease, Cluster,
/// Maintenance and (minimal) Auth services that etcd clients call.
#[allow(clippy::all, missing_docs)]
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}

/// skiff's own protobuf packages (`skiff.*`), nested as prost expects.
pub mod skiff {
    /// `skiff.store.*`: the replicated store's state-machine commands.
    pub mod store {
        /// `skiff.store.v1`: commands carried in Raft entries and conf
        /// changes.
        #[allow(clippy::all, missing_docs)]
        pub mod v1 {
            tonic::include_proto!("skiff.store.v1");
        }
    }

    /// `skiff.raft.*`: the member-to-member transport.
    pub mod raft {
        /// `skiff.raft.v1`: Raft message streaming, lease-renewal forwarding
        /// to the leader and member discovery for joining nodes.
        #[allow(clippy::all, missing_docs)]
        pub mod v1 {
            tonic::include_proto!("skiff.raft.v1");
        }
    }

    /// `skiff.agent.*`: the node agent's streaming service.
    pub mod agent {
        /// `skiff.agent.v1`: container logs, exec and port-forward, served by the
        /// agent on each node.
        #[allow(clippy::all, missing_docs)]
        pub mod v1 {
            tonic::include_proto!("skiff.agent.v1");
        }
    }
}

/// Commands replicated through the store's Raft log (`skiff.store.v1`).
pub use skiff::store::v1 as store;

/// Member-to-member Raft transport (`skiff.raft.v1`).
pub use skiff::raft::v1 as raft;

/// The node agent's streaming service (`skiff.agent.v1`).
pub use skiff::agent::v1 as agent;
