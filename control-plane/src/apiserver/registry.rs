//! Generic storage of API objects in the store as JSON, under
//! `/registry/<group>/<resource>/<namespace>/<name>` (`core` names the legacy group; cluster
//! scoped objects have no namespace segment). resourceVersion is the store revision that last
//! wrote the object, so optimistic concurrency, consistent paging and watches map straight onto
//! the store's MVCC.

use base64::Engine as _;
use serde_json::{json, Value};
use skiff_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use skiff_proto::etcdserverpb::request_op::Request as Op;
use skiff_proto::etcdserverpb::{
    Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use skiff_proto::mvccpb::KeyValue;
use skiff_proto::store::command;

use super::catalog::ResourceType;
use super::status::Status;
use crate::store::mvcc::Applied;
use crate::store::{Store, StoreError};

/// How many keys one store read takes while paging through a filtered list.
const SCAN_BATCH: i64 = 500;

/// The registry directory of a resource, optionally narrowed to one namespace; ends in '/'.
pub fn prefix(res: &ResourceType, namespace: Option<&str>) -> Vec<u8> {
    let group = if res.group.is_empty() {
        "core"
    } else {
        res.group
    };
    match namespace {
        Some(ns) => format!("/registry/{group}/{}/{ns}/", res.plural),
        None => format!("/registry/{group}/{}/", res.plural),
    }
    .into_bytes()
}

/// The key of one object.
pub fn key(res: &ResourceType, namespace: Option<&str>, name: &str) -> Vec<u8> {
    let mut k = prefix(res, namespace);
    k.extend_from_slice(name.as_bytes());
    k
}

/// The first key after every key starting with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// Maps a store failure onto the Status a client sees.
pub fn store_error(e: StoreError) -> Status {
    match e {
        StoreError::Compacted { compact_revision } => Status::expired(format!(
            "The resourceVersion for the provided list is too old (compacted at {compact_revision})."
        )),
        StoreError::TooLarge => Status::too_large(),
        StoreError::TooManyRequests => Status::too_many_requests(),
        StoreError::Timeout | StoreError::NoLeader => Status::timeout(e.to_string()),
        other => Status::internal(format!("storage: {other}")),
    }
}

/// Decodes a stored object and stamps its resourceVersion.
pub fn decode(kv: &KeyValue) -> Result<Value, Status> {
    let mut obj: Value = serde_json::from_slice(&kv.value)
        .map_err(|e| Status::internal(format!("stored object is not JSON: {e}")))?;
    obj["metadata"]["resourceVersion"] = json!(kv.mod_revision.to_string());
    Ok(obj)
}

/// The object as stored: without resourceVersion, which the revision already records.
fn encode(obj: &Value) -> Result<Vec<u8>, Status> {
    let mut obj = obj.clone();
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    serde_json::to_vec(&obj).map_err(|e| Status::internal(e.to_string()))
}

fn revision_of(obj: &Value) -> i64 {
    obj["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// The object at `key` read linearizably, or None.
pub async fn get(store: &Store, key: &[u8]) -> Result<Option<Value>, Status> {
    store.read_barrier().await.map_err(store_error)?;
    get_local(store, key)
}

/// The object at `key` as this member has it, without a ReadIndex round: for lookups (RBAC
/// roles) where a moment's staleness is what Kubernetes' own caches give too.
pub fn get_local(store: &Store, key: &[u8]) -> Result<Option<Value>, Status> {
    let resp = store
        .mvcc()
        .range(&RangeRequest {
            key: key.to_vec(),
            ..Default::default()
        })
        .map_err(store_error)?;
    resp.kvs.first().map(decode).transpose()
}

/// Where a page of a list starts and what it may hold.
#[derive(Debug, Default, Clone)]
pub struct ListOptions {
    /// Read at this revision (a continued list); None reads the newest.
    pub revision: Option<i64>,
    /// First key to consider (a continued list); None starts at the prefix.
    pub start: Option<Vec<u8>>,
    /// At most this many items; 0 means all.
    pub limit: usize,
    /// Skip the ReadIndex round (resourceVersion=0: any recent state will do).
    pub serializable: bool,
}

/// One page of a list.
#[derive(Debug)]
pub struct ListPage {
    pub items: Vec<Value>,
    /// The revision the page was read at: the list's resourceVersion.
    pub revision: i64,
    /// The key to continue from, when more items may follow.
    pub next: Option<Vec<u8>>,
}

/// The objects under `prefix` that `keep` accepts, a page at a time, all read at one revision.
pub async fn list(
    store: &Store,
    prefix: &[u8],
    opts: &ListOptions,
    keep: impl Fn(&Value) -> bool,
) -> Result<ListPage, Status> {
    if !opts.serializable && opts.revision.is_none() {
        store.read_barrier().await.map_err(store_error)?;
    }
    let end = prefix_end(prefix);
    let mut revision = opts.revision.unwrap_or(0);
    let mut from = opts.start.clone().unwrap_or_else(|| prefix.to_vec());
    let mut items = Vec::new();
    loop {
        let resp = store
            .mvcc()
            .range(&RangeRequest {
                key: from.clone(),
                range_end: end.clone(),
                limit: SCAN_BATCH,
                revision,
                ..Default::default()
            })
            .map_err(store_error)?;
        if revision == 0 {
            revision = resp.header.as_ref().map(|h| h.revision).unwrap_or(0);
        }
        for (i, kv) in resp.kvs.iter().enumerate() {
            let obj = decode(kv)?;
            if keep(&obj) {
                items.push(obj);
                if opts.limit > 0 && items.len() >= opts.limit {
                    let mut next = kv.key.clone();
                    next.push(0);
                    let more = resp.more || i + 1 < resp.kvs.len();
                    return Ok(ListPage {
                        items,
                        revision,
                        next: more.then_some(next),
                    });
                }
            }
        }
        match resp.kvs.last() {
            Some(last) if resp.more => {
                from = last.key.clone();
                from.push(0);
            }
            _ => {
                return Ok(ListPage {
                    items,
                    revision,
                    next: None,
                })
            }
        }
    }
}

/// The continue token of a page: upstream's shape, base64 JSON of the revision and start key.
pub fn continue_token(revision: i64, next: &[u8], prefix: &[u8]) -> String {
    let start = String::from_utf8_lossy(next.strip_prefix(prefix).unwrap_or(next)).into_owned();
    let raw = json!({"v": "meta.k8s.io/v1", "rv": revision, "start": start});
    base64::engine::general_purpose::URL_SAFE.encode(raw.to_string())
}

/// Reads a continue token back into list options; a bad token is the client's error.
pub fn parse_continue(token: &str, prefix: &[u8]) -> Result<(i64, Vec<u8>), Status> {
    let bad = || {
        Status::bad_request("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)".into())
    };
    let raw = base64::engine::general_purpose::URL_SAFE
        .decode(token)
        .or_else(|_| base64::engine::general_purpose::STANDARD.decode(token))
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let rv = v["rv"].as_i64().filter(|r| *r > 0).ok_or_else(bad)?;
    let start = v["start"].as_str().ok_or_else(bad)?;
    if start.contains("..") || start.starts_with('/') {
        return Err(bad());
    }
    let mut key = prefix.to_vec();
    key.extend_from_slice(start.as_bytes());
    Ok((rv, key))
}

fn txn_put(key: &[u8], compare: Compare, obj: &Value) -> Result<TxnRequest, Status> {
    Ok(TxnRequest {
        compare: vec![compare],
        success: vec![RequestOp {
            request: Some(Op::RequestPut(PutRequest {
                key: key.to_vec(),
                value: encode(obj)?,
                ..Default::default()
            })),
        }],
        failure: vec![],
    })
}

fn mod_revision_is(key: &[u8], rev: i64) -> Compare {
    Compare {
        key: key.to_vec(),
        target: CompareTarget::Mod as i32,
        result: CompareResult::Equal as i32,
        target_union: Some(TargetUnion::ModRevision(rev)),
        ..Default::default()
    }
}

/// Runs a one-compare transaction; Some(revision) when the compare held.
async fn run(store: &Store, txn: TxnRequest) -> Result<Option<i64>, Status> {
    match store
        .propose(command::Op::Txn(txn))
        .await
        .map_err(store_error)?
    {
        Applied::Txn(r) if r.succeeded => Ok(Some(r.header.map(|h| h.revision).unwrap_or(0))),
        Applied::Txn(_) => Ok(None),
        _ => Err(Status::internal("unexpected result from the store".into())),
    }
}

/// Keys written or removed in the same transaction as an object: the allocations (service
/// IPs, node ports) it holds, so an allocation never outlives or predates its owner.
#[derive(Debug, Default, Clone)]
pub struct Claims {
    /// Keys that must not exist yet, created with the value given.
    pub take: Vec<(Vec<u8>, Vec<u8>)>,
    /// Keys deleted.
    pub release: Vec<Vec<u8>>,
}

impl Claims {
    fn apply(&self, txn: &mut TxnRequest) {
        for (key, value) in &self.take {
            txn.compare.push(absent(key));
            txn.success.push(RequestOp {
                request: Some(Op::RequestPut(PutRequest {
                    key: key.clone(),
                    value: value.clone(),
                    ..Default::default()
                })),
            });
        }
        for key in &self.release {
            txn.success.push(RequestOp {
                request: Some(Op::RequestDeleteRange(DeleteRangeRequest {
                    key: key.clone(),
                    ..Default::default()
                })),
            });
        }
    }
}

fn absent(key: &[u8]) -> Compare {
    Compare {
        key: key.to_vec(),
        target: CompareTarget::Create as i32,
        result: CompareResult::Equal as i32,
        target_union: Some(TargetUnion::CreateRevision(0)),
        ..Default::default()
    }
}

fn stamped(obj: &Value, rev: i64) -> Value {
    let mut out = obj.clone();
    out["metadata"]["resourceVersion"] = json!(rev.to_string());
    out
}

/// Stores `obj` at `key` unless something is there already (or a claim is taken); None when
/// the transaction's compares failed.
pub async fn create(
    store: &Store,
    key: &[u8],
    obj: &Value,
    claims: &Claims,
) -> Result<Option<Value>, Status> {
    let mut txn = txn_put(key, absent(key), obj)?;
    claims.apply(&mut txn);
    Ok(run(store, txn).await?.map(|rev| stamped(obj, rev)))
}

/// Replaces the object at `key` if it is still the version `current` was read at; None when
/// another write got there first (or a claim is taken).
pub async fn replace(
    store: &Store,
    key: &[u8],
    current: &Value,
    obj: &Value,
    claims: &Claims,
) -> Result<Option<Value>, Status> {
    let mut txn = txn_put(key, mod_revision_is(key, revision_of(current)), obj)?;
    claims.apply(&mut txn);
    Ok(run(store, txn).await?.map(|rev| stamped(obj, rev)))
}

/// Removes the object at `key` if it is still the version `current` was read at. Returns the
/// object as it was, stamped with the deleting revision (what upstream's DELETE answers and
/// the watch's DELETED event carries), or None when another write got there first.
pub async fn remove(
    store: &Store,
    key: &[u8],
    current: &Value,
    claims: &Claims,
) -> Result<Option<Value>, Status> {
    let mut txn = TxnRequest {
        compare: vec![mod_revision_is(key, revision_of(current))],
        success: vec![RequestOp {
            request: Some(Op::RequestDeleteRange(DeleteRangeRequest {
                key: key.to_vec(),
                ..Default::default()
            })),
        }],
        failure: vec![],
    };
    claims.apply(&mut txn);
    Ok(run(store, txn).await?.map(|rev| stamped(current, rev)))
}

/// Every key under `prefix` (values unread), for allocators scanning what is taken.
pub fn keys(store: &Store, prefix: &[u8]) -> Result<Vec<Vec<u8>>, Status> {
    let resp = store
        .mvcc()
        .range(&RangeRequest {
            key: prefix.to_vec(),
            range_end: prefix_end(prefix),
            keys_only: true,
            ..Default::default()
        })
        .map_err(store_error)?;
    Ok(resp.kvs.into_iter().map(|kv| kv.key).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::catalog::find;

    #[test]
    fn keys_and_tokens() {
        let pods = find("", "v1", "pods").unwrap();
        assert_eq!(
            key(pods, Some("default"), "web"),
            b"/registry/core/pods/default/web"
        );
        let deploy = find("apps", "v1", "deployments").unwrap();
        assert_eq!(prefix(deploy, None), b"/registry/apps/deployments/");
        assert_eq!(prefix_end(b"/a/"), b"/a0");
        let p = prefix(pods, Some("default"));
        let tok = continue_token(42, &key(pods, Some("default"), "web\0"), &p);
        let (rv, start) = parse_continue(&tok, &p).unwrap();
        assert_eq!(rv, 42);
        assert_eq!(start, key(pods, Some("default"), "web\0"));
        assert!(parse_continue("!!", &p).is_err());
        assert!(parse_continue(
            &base64::engine::general_purpose::STANDARD.encode(r#"{"rv":1,"start":"../x"}"#),
            &p
        )
        .is_err());
    }
}
