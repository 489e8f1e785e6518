//! etcd's Lease service. Grants and revocations are replicated; keep-alives and TTL queries
//! are answered by the leader, which alone runs lease clocks.

use std::pin::Pin;

use futures::Stream;
use rand::Rng;
use skiff_proto::etcdserverpb::{lease_server::Lease, *};
use skiff_proto::store::command::Op;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

use crate::store::mvcc::Applied;
use crate::store::{Store, StoreError};

pub struct LeaseApi {
    store: Store,
}

impl LeaseApi {
    pub fn new(store: Store) -> LeaseApi {
        LeaseApi { store }
    }
}

#[tonic::async_trait]
impl Lease for LeaseApi {
    async fn lease_grant(
        &self,
        req: Request<LeaseGrantRequest>,
    ) -> Result<Response<LeaseGrantResponse>, Status> {
        let mut req = req.into_inner();
        if req.id == 0 {
            req.id = rand::thread_rng().gen_range(1..i64::MAX);
        }
        match self.store.propose(Op::LeaseGrant(req)).await? {
            Applied::LeaseGrant(mut r) => {
                r.header = self.store.header(self.store.mvcc().revision()?);
                Ok(Response::new(r))
            }
            _ => Err(StoreError::Storage("unexpected apply result".into()).into()),
        }
    }

    async fn lease_revoke(
        &self,
        req: Request<LeaseRevokeRequest>,
    ) -> Result<Response<LeaseRevokeResponse>, Status> {
        match self
            .store
            .propose(Op::LeaseRevoke(req.into_inner()))
            .await?
        {
            Applied::LeaseRevoke(r) => Ok(Response::new(LeaseRevokeResponse {
                header: self.store.header(r.header.map(|h| h.revision).unwrap_or(0)),
            })),
            _ => Err(StoreError::Storage("unexpected apply result".into()).into()),
        }
    }

    type LeaseKeepAliveStream =
        Pin<Box<dyn Stream<Item = Result<LeaseKeepAliveResponse, Status>> + Send>>;

    async fn lease_keep_alive(
        &self,
        req: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let (tx, rx) = mpsc::channel(16);
        let store = self.store.clone();
        let mut input = req.into_inner();
        tokio::spawn(async move {
            loop {
                let req = match input.message().await {
                    Ok(Some(r)) => r,
                    Ok(None) => return,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                let resp = match store.lease_clock(req.id, true).await {
                    // An unknown lease answers TTL 0, which clients read as "expired".
                    Ok(clock) => Ok(LeaseKeepAliveResponse {
                        header: store.header(store.mvcc().revision().unwrap_or(0)),
                        id: req.id,
                        ttl: clock.map(|(_, granted)| granted).unwrap_or(0),
                    }),
                    Err(e) => Err(Status::from(e)),
                };
                if tx.send(resp).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn lease_time_to_live(
        &self,
        req: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        let req = req.into_inner();
        let header = self.store.header(self.store.mvcc().revision()?);
        let Some((ttl, granted_ttl)) = self.store.lease_clock(req.id, false).await? else {
            return Ok(Response::new(LeaseTimeToLiveResponse {
                header,
                id: req.id,
                ttl: -1,
                ..Default::default()
            }));
        };
        let keys = if req.keys {
            self.store.mvcc().lease_keys(req.id)?
        } else {
            vec![]
        };
        Ok(Response::new(LeaseTimeToLiveResponse {
            header,
            id: req.id,
            ttl,
            granted_ttl,
            keys,
        }))
    }

    async fn lease_leases(
        &self,
        _req: Request<LeaseLeasesRequest>,
    ) -> Result<Response<LeaseLeasesResponse>, Status> {
        let leases = self
            .store
            .mvcc()
            .leases()?
            .into_iter()
            .map(|(id, _)| LeaseStatus { id })
            .collect();
        Ok(Response::new(LeaseLeasesResponse {
            header: self.store.header(self.store.mvcc().revision()?),
            leases,
        }))
    }
}
