//! etcd's Cluster service: membership changes go through Raft as configuration changes whose
//! context names the member, so every member records the same member list.

use raft::eraftpb::ConfChangeType;
use rand::Rng;
use skiff_proto::etcdserverpb::{cluster_server::Cluster, *};
use skiff_proto::store::MemberContext;
use tonic::{Request, Response, Status};

use crate::store::{Store, StoreError};

pub struct ClusterApi {
    store: Store,
}

impl ClusterApi {
    pub fn new(store: Store) -> ClusterApi {
        ClusterApi { store }
    }

    fn members(&self) -> Result<Vec<Member>, StoreError> {
        self.store.mvcc().members()
    }

    fn member(&self, id: u64) -> Result<Member, StoreError> {
        self.store
            .mvcc()
            .member(id)?
            .ok_or(StoreError::MemberNotFound)
    }

    fn header(&self) -> Option<ResponseHeader> {
        self.store.header(self.store.mvcc().revision().unwrap_or(0))
    }
}

fn check_urls(urls: &[String]) -> Result<(), StoreError> {
    if urls.is_empty() {
        return Err(StoreError::InvalidArgument(
            "member needs at least one peer URL".into(),
        ));
    }
    for u in urls {
        let ok = u
            .parse::<tonic::transport::Uri>()
            .ok()
            .is_some_and(|uri| uri.host().is_some() && uri.scheme().is_some());
        if !ok {
            return Err(StoreError::InvalidArgument(format!(
                "invalid peer URL {u:?}: want scheme://host:port"
            )));
        }
    }
    Ok(())
}

#[tonic::async_trait]
impl Cluster for ClusterApi {
    async fn member_add(
        &self,
        req: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        let req = req.into_inner();
        check_urls(&req.peer_ur_ls)?;
        let existing = self.members()?;
        if existing
            .iter()
            .any(|m| m.peer_ur_ls.iter().any(|u| req.peer_ur_ls.contains(u)))
        {
            return Err(StoreError::PeerUrlExists.into());
        }
        let id = rand::thread_rng().gen_range(1..u64::MAX);
        let ty = if req.is_learner {
            ConfChangeType::AddLearnerNode
        } else {
            ConfChangeType::AddNode
        };
        let ctx = MemberContext {
            id,
            name: String::new(),
            peer_urls: req.peer_ur_ls.clone(),
            is_learner: req.is_learner,
        };
        self.store.change_membership(ty, id, ctx).await?;
        let member = Member {
            id,
            peer_ur_ls: req.peer_ur_ls,
            is_learner: req.is_learner,
            ..Default::default()
        };
        Ok(Response::new(MemberAddResponse {
            header: self.header(),
            member: Some(member),
            members: self.members()?,
        }))
    }

    async fn member_remove(
        &self,
        req: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        let id = req.into_inner().id;
        self.member(id)?;
        self.store
            .change_membership(ConfChangeType::RemoveNode, id, MemberContext::default())
            .await?;
        Ok(Response::new(MemberRemoveResponse {
            header: self.header(),
            members: self.members()?,
        }))
    }

    async fn member_update(
        &self,
        _req: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        Err(Status::unimplemented(
            "skiff does not change a member's peer URLs in place; remove the member and add it again",
        ))
    }

    async fn member_list(
        &self,
        req: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        if req.into_inner().linearizable {
            self.store.read_barrier().await?;
        }
        Ok(Response::new(MemberListResponse {
            header: self.header(),
            members: self.members()?,
        }))
    }

    async fn member_promote(
        &self,
        req: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        let id = req.into_inner().id;
        let m = self.member(id)?;
        if !m.is_learner {
            return Err(StoreError::NotLearner.into());
        }
        let ctx = MemberContext {
            id,
            name: m.name,
            peer_urls: m.peer_ur_ls,
            is_learner: false,
        };
        self.store
            .change_membership(ConfChangeType::AddNode, id, ctx)
            .await?;
        Ok(Response::new(MemberPromoteResponse {
            header: self.header(),
            members: self.members()?,
        }))
    }
}
