//! etcd's Maintenance service: status for `endpoint status`, and snapshots for backups.

use std::pin::Pin;

use futures::Stream;
use skiff_proto::etcdserverpb::{maintenance_server::Maintenance, *};
use tonic::{Request, Response, Status};

use crate::store::backup;
use crate::store::{Store, StoreError};

/// The etcd API version this store speaks, reported by `endpoint status`.
pub const ETCD_API_VERSION: &str = "3.5.0";
/// Snapshot stream chunk size.
const CHUNK: usize = 64 * 1024;

pub struct MaintenanceApi {
    store: Store,
}

impl MaintenanceApi {
    pub fn new(store: Store) -> MaintenanceApi {
        MaintenanceApi { store }
    }

    fn header(&self) -> Option<ResponseHeader> {
        self.store.header(self.store.mvcc().revision().unwrap_or(0))
    }
}

#[tonic::async_trait]
impl Maintenance for MaintenanceApi {
    async fn alarm(&self, _req: Request<AlarmRequest>) -> Result<Response<AlarmResponse>, Status> {
        Ok(Response::new(AlarmResponse {
            header: self.header(),
            alarms: vec![],
        }))
    }

    async fn status(
        &self,
        _req: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        let s = self.store.status();
        let size = self.store.mvcc().size_on_disk() as i64;
        let mut errors = vec![];
        if s.leader == 0 {
            errors.push(StoreError::NoLeader.to_string());
        }
        Ok(Response::new(StatusResponse {
            header: self.header(),
            version: ETCD_API_VERSION.into(),
            db_size: size,
            leader: s.leader,
            raft_index: s.commit,
            raft_term: s.term,
            raft_applied_index: s.applied,
            errors,
            db_size_in_use: size,
            is_learner: s.is_learner,
            ..Default::default()
        }))
    }

    async fn defragment(
        &self,
        _req: Request<DefragmentRequest>,
    ) -> Result<Response<DefragmentResponse>, Status> {
        Ok(Response::new(DefragmentResponse {
            header: self.header(),
        }))
    }

    async fn hash(&self, _req: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        let (data, _) = self.store.export().await?;
        Ok(Response::new(HashResponse {
            header: self.header(),
            hash: crc32fast::hash(&data),
        }))
    }

    async fn hash_kv(
        &self,
        _req: Request<HashKvRequest>,
    ) -> Result<Response<HashKvResponse>, Status> {
        let (data, rev) = self.store.export().await?;
        Ok(Response::new(HashKvResponse {
            header: self.header(),
            hash: crc32fast::hash(&data),
            compact_revision: self.store.mvcc().compacted()?,
            hash_revision: rev,
        }))
    }

    type SnapshotStream = Pin<Box<dyn Stream<Item = Result<SnapshotResponse, Status>> + Send>>;

    async fn snapshot(
        &self,
        _req: Request<SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        let (data, rev) = self.store.export().await?;
        let file = backup::encode(rev, &data);
        let header = self.header();
        let total = file.len();
        let chunks: Vec<SnapshotResponse> = file
            .chunks(CHUNK)
            .enumerate()
            .map(|(i, c)| SnapshotResponse {
                header,
                remaining_bytes: (total - (i * CHUNK + c.len())) as u64,
                blob: c.to_vec(),
                ..Default::default()
            })
            .collect();
        Ok(Response::new(Box::pin(futures::stream::iter(
            chunks.into_iter().map(Ok),
        ))))
    }

    async fn move_leader(
        &self,
        req: Request<MoveLeaderRequest>,
    ) -> Result<Response<MoveLeaderResponse>, Status> {
        if !self.store.status().is_leader {
            return Err(Status::failed_precondition("etcdserver: not leader"));
        }
        self.store
            .transfer_leader(req.into_inner().target_id)
            .await?;
        Ok(Response::new(MoveLeaderResponse {
            header: self.header(),
        }))
    }
}
