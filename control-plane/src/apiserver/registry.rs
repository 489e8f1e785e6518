//! Generic storage of API objects in the store, under `/registry/<resource>/<name>` (cluster
//! scoped) as JSON. resourceVersion is the store revision that last wrote the object, so
//! optimistic concurrency and watches map straight onto the store's MVCC.

use serde_json::{json, Value};
use skiff_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use skiff_proto::etcdserverpb::request_op::Request as Op;
use skiff_proto::etcdserverpb::{
    Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use skiff_proto::store::command;

use super::status::Status;
use crate::store::mvcc::Applied;
use crate::store::{Store, StoreError};

/// One kind of object: where it is kept and how clients name it.
pub struct Resource {
    /// Plural, lower case: the URL segment and the registry directory.
    pub plural: &'static str,
    pub kind: &'static str,
    pub api_version: &'static str,
}

impl Resource {
    fn key(&self, name: &str) -> Vec<u8> {
        format!("/registry/{}/{name}", self.plural).into_bytes()
    }

    fn prefix(&self) -> Vec<u8> {
        format!("/registry/{}/", self.plural).into_bytes()
    }
}

fn store_error(e: StoreError) -> Status {
    Status::internal(format!("storage: {e}"))
}

/// Decodes a stored object and stamps its resourceVersion.
fn decode(value: &[u8], mod_revision: i64) -> Result<Value, Status> {
    let mut obj: Value = serde_json::from_slice(value)
        .map_err(|e| Status::internal(format!("stored object is not JSON: {e}")))?;
    obj["metadata"]["resourceVersion"] = json!(mod_revision.to_string());
    Ok(obj)
}

/// Stores `obj` under `name` unless something is there already.
pub async fn create(
    store: &Store,
    res: &Resource,
    name: &str,
    obj: &Value,
) -> Result<Value, Status> {
    let key = res.key(name);
    let txn = TxnRequest {
        compare: vec![Compare {
            key: key.clone(),
            target: CompareTarget::Create as i32,
            result: CompareResult::Equal as i32,
            target_union: Some(TargetUnion::CreateRevision(0)),
            ..Default::default()
        }],
        success: vec![RequestOp {
            request: Some(Op::RequestPut(PutRequest {
                key,
                value: serde_json::to_vec(obj).map_err(|e| Status::internal(e.to_string()))?,
                ..Default::default()
            })),
        }],
        failure: vec![],
    };
    match store
        .propose(command::Op::Txn(txn))
        .await
        .map_err(store_error)?
    {
        Applied::Txn(r) if r.succeeded => {
            let rev = r.header.map(|h| h.revision).unwrap_or(0);
            let mut out = obj.clone();
            out["metadata"]["resourceVersion"] = json!(rev.to_string());
            Ok(out)
        }
        Applied::Txn(_) => Err(Status::already_exists(res.plural, name)),
        _ => Err(Status::internal("unexpected result from the store".into())),
    }
}

/// The object called `name`, read linearizably.
pub async fn get(store: &Store, res: &Resource, name: &str) -> Result<Value, Status> {
    store.read_barrier().await.map_err(store_error)?;
    let resp = store
        .mvcc()
        .range(&RangeRequest {
            key: res.key(name),
            ..Default::default()
        })
        .map_err(store_error)?;
    match resp.kvs.first() {
        Some(kv) => decode(&kv.value, kv.mod_revision),
        None => Err(Status::not_found_object(res.plural, name)),
    }
}

/// Every object of the resource, with the revision the list was read at.
pub async fn list(store: &Store, res: &Resource) -> Result<(Vec<Value>, i64), Status> {
    store.read_barrier().await.map_err(store_error)?;
    let prefix = res.prefix();
    let mut end = prefix.clone();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    let resp = store
        .mvcc()
        .range(&RangeRequest {
            key: prefix,
            range_end: end,
            ..Default::default()
        })
        .map_err(store_error)?;
    let revision = resp.header.map(|h| h.revision).unwrap_or(0);
    let items = resp
        .kvs
        .iter()
        .map(|kv| decode(&kv.value, kv.mod_revision))
        .collect::<Result<_, _>>()?;
    Ok((items, revision))
}

/// Removes the object called `name`, returning it as it was.
pub async fn delete(store: &Store, res: &Resource, name: &str) -> Result<Value, Status> {
    let req = DeleteRangeRequest {
        key: res.key(name),
        prev_kv: true,
        ..Default::default()
    };
    match store
        .propose(command::Op::DeleteRange(req))
        .await
        .map_err(store_error)?
    {
        Applied::DeleteRange(r) => match r.prev_kvs.first() {
            Some(kv) => decode(&kv.value, kv.mod_revision),
            None => Err(Status::not_found_object(res.plural, name)),
        },
        _ => Err(Status::internal("unexpected result from the store".into())),
    }
}
