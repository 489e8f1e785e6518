//! The service members call on each other: Raft message streams, lease forwarding and
//! member discovery for joiners.

use skiff_proto::raft::raft_transport_server::RaftTransport;
use skiff_proto::raft::*;
use tonic::{Request, Response, Status, Streaming};

use crate::store::transport::decode_batch;
use crate::store::{Store, StoreError};

pub struct PeerApi {
    store: Store,
}

impl PeerApi {
    pub fn new(store: Store) -> PeerApi {
        PeerApi { store }
    }
}

#[tonic::async_trait]
impl RaftTransport for PeerApi {
    async fn stream(
        &self,
        req: Request<Streaming<RaftBatch>>,
    ) -> Result<Response<StreamAck>, Status> {
        let mut stream = req.into_inner();
        while let Some(batch) = stream.message().await? {
            self.store.step(decode_batch(&batch)).await?;
        }
        Ok(Response::new(StreamAck {}))
    }

    async fn lease_renew(
        &self,
        req: Request<LeaseRenewRequest>,
    ) -> Result<Response<LeaseRenewResponse>, Status> {
        let req = req.into_inner();
        if !self.store.status().is_leader {
            return Err(StoreError::NoLeader.into());
        }
        let clock = self.store.lease_clock(req.id, req.renew).await?;
        Ok(Response::new(match clock {
            Some((ttl, granted_ttl)) => LeaseRenewResponse {
                ttl,
                granted_ttl,
                found: true,
            },
            None => LeaseRenewResponse::default(),
        }))
    }

    async fn members(
        &self,
        _req: Request<MembersRequest>,
    ) -> Result<Response<MembersResponse>, Status> {
        Ok(Response::new(MembersResponse {
            cluster_id: self.store.mvcc().cluster_id()?,
            members: self.store.mvcc().members()?,
            leader: self.store.status().leader,
        }))
    }
}
