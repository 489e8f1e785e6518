//! The etcd v3 gRPC services clients use, and the peer service members use.

mod cluster;
mod kv;
mod lease;
mod maintenance;
mod peer;
mod watch;

use skiff_proto::etcdserverpb::{
    cluster_server::ClusterServer, kv_server::KvServer, lease_server::LeaseServer,
    maintenance_server::MaintenanceServer, watch_server::WatchServer,
};
use skiff_proto::raft::raft_transport_server::RaftTransportServer;
use tonic::transport::server::Router;
use tonic::transport::Server;

use super::transport::{MAX_PEER_MESSAGE, PEER_WINDOW};
use super::Store;

/// gRPC frames may exceed the request limit by this much, so an oversized request reaches the
/// store and gets etcd's "request is too large" instead of a transport error.
const GRPC_OVERHEAD: usize = 512 * 1024;

/// The client-facing services, wire-compatible with etcd.
pub fn client_services(store: &Store) -> Router {
    let max = store.max_request_bytes() + GRPC_OVERHEAD;
    Server::builder()
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
        .initial_stream_window_size(1 << 20)
        .initial_connection_window_size(8 << 20)
        .add_service(KvServer::new(kv::KvApi::new(store.clone())).max_decoding_message_size(max))
        .add_service(
            WatchServer::new(watch::WatchApi::new(store.clone())).max_decoding_message_size(max),
        )
        .add_service(LeaseServer::new(lease::LeaseApi::new(store.clone())))
        .add_service(ClusterServer::new(cluster::ClusterApi::new(store.clone())))
        .add_service(
            MaintenanceServer::new(maintenance::MaintenanceApi::new(store.clone()))
                .max_encoding_message_size(usize::MAX),
        )
}

/// The member-to-member service.
pub fn peer_services(store: &Store) -> Router {
    Server::builder()
        .initial_stream_window_size(PEER_WINDOW)
        .initial_connection_window_size(PEER_WINDOW * 2)
        .add_service(
            RaftTransportServer::new(peer::PeerApi::new(store.clone()))
                .max_decoding_message_size(MAX_PEER_MESSAGE)
                .max_encoding_message_size(MAX_PEER_MESSAGE),
        )
}
