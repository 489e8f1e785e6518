//! etcd's KV service: reads are served locally after a ReadIndex barrier (or at once when the
//! client asks for serializable reads); writes go through Raft.

use skiff_proto::etcdserverpb::{kv_server::Kv, *};
use skiff_proto::store::command::Op;
use tonic::{Request, Response, Status};

use crate::store::mvcc::Applied;
use crate::store::{Store, StoreError};

pub struct KvApi {
    store: Store,
}

impl KvApi {
    pub fn new(store: Store) -> KvApi {
        KvApi { store }
    }

    fn fill(&self, header: &mut Option<ResponseHeader>) {
        let revision = header.as_ref().map(|h| h.revision).unwrap_or(0);
        *header = self.store.header(revision);
    }
}

fn unexpected() -> Status {
    StoreError::Storage("unexpected apply result".into()).into()
}

#[tonic::async_trait]
impl Kv for KvApi {
    #[tracing::instrument(skip_all, name = "kv.range")]
    async fn range(&self, req: Request<RangeRequest>) -> Result<Response<RangeResponse>, Status> {
        let req = req.into_inner();
        if !req.serializable {
            self.store.read_barrier().await?;
        }
        let mut resp = self.store.mvcc().range(&req)?;
        self.fill(&mut resp.header);
        Ok(Response::new(resp))
    }

    #[tracing::instrument(skip_all, name = "kv.put")]
    async fn put(&self, req: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        match self.store.propose(Op::Put(req.into_inner())).await? {
            Applied::Put(mut r) => {
                self.fill(&mut r.header);
                Ok(Response::new(r))
            }
            _ => Err(unexpected()),
        }
    }

    #[tracing::instrument(skip_all, name = "kv.delete_range")]
    async fn delete_range(
        &self,
        req: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        match self
            .store
            .propose(Op::DeleteRange(req.into_inner()))
            .await?
        {
            Applied::DeleteRange(mut r) => {
                self.fill(&mut r.header);
                Ok(Response::new(r))
            }
            _ => Err(unexpected()),
        }
    }

    #[tracing::instrument(skip_all, name = "kv.txn")]
    async fn txn(&self, req: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        match self.store.propose(Op::Txn(req.into_inner())).await? {
            Applied::Txn(mut r) => {
                self.fill(&mut r.header);
                Ok(Response::new(r))
            }
            _ => Err(unexpected()),
        }
    }

    #[tracing::instrument(skip_all, name = "kv.compact")]
    async fn compact(
        &self,
        req: Request<CompactionRequest>,
    ) -> Result<Response<CompactionResponse>, Status> {
        match self.store.propose(Op::Compaction(req.into_inner())).await? {
            Applied::Compaction(mut r) => {
                self.fill(&mut r.header);
                Ok(Response::new(r))
            }
            _ => Err(unexpected()),
        }
    }
}
