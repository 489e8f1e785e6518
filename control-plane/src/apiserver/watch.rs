//! Watches: a chunked stream of `{"type","object"}` lines, one per change, read from the
//! store's revision history so every watcher sees each change once and in revision order.
//!
//! Each watch is a task that follows the store's applied revision, reads the events since the
//! last one it sent, and writes them into a bounded channel that is the response body; a slow
//! client slows only its own task, and a closed connection ends it.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::Response;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::debug;

use super::registry::{self, ListOptions};
use super::rest::{selectors, Query, Target};
use super::status::Status;
use super::table;
use crate::store::mvcc::PrevKv;
use crate::store::{Store, StoreError};
use skiff_proto::mvccpb::KeyValue;

/// Lines buffered per watcher before its task waits for the client.
const BUFFER: usize = 64;
/// Events read from the store per step.
const STEP: usize = 256;
/// How often a watcher that allows bookmarks is told the current revision.
const BOOKMARK_EVERY: Duration = Duration::from_secs(10);
/// Longest watch a client may ask for; upstream caps at the server's request timeout too.
const MAX_TIMEOUT: Duration = Duration::from_secs(3600);
/// One line of the stream.
#[derive(Serialize)]
struct Line<'a> {
    #[serde(rename = "type")]
    ty: &'a str,
    object: &'a Value,
}

/// Starts a watch on `target` per the query and returns the streaming response.
pub async fn serve(
    store: Store,
    target: Target,
    q: Query,
    as_table: bool,
) -> Result<Response, Status> {
    let (label, field) = selectors(target.res, &q)?;
    let rv = match q.get("resourceVersion").map(String::as_str) {
        None | Some("") | Some("0") => None,
        Some(s) => Some(s.parse::<i64>().map_err(|_| {
            Status::bad_request(format!(
                "resourceVersion: Invalid value: \"{s}\": must be an integer"
            ))
        })?),
    };
    // sendInitialEvents (WatchList) asks for the current state first and a bookmark marking
    // its end; without it, only an unset resourceVersion replays the current state.
    let send_initial = q.get("sendInitialEvents").map(|s| s == "true");
    let initial = send_initial.unwrap_or(rv.is_none());
    let bookmarks = q.get("allowWatchBookmarks").is_some_and(|b| b == "true");
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(MAX_TIMEOUT)
        .min(MAX_TIMEOUT);
    let include = q
        .get("includeObject")
        .cloned()
        .unwrap_or_else(|| "Metadata".into());
    // A pinned name narrows the watch the way `kubectl get x -w` and reflectors pin it.
    let name = target.name.clone();
    // A watcher that selects everything needs no previous objects but the deleted ones.
    let selects_all = label.is_empty() && field.is_empty() && name.is_none();
    let prev = if selects_all {
        PrevKv::Deletes
    } else {
        PrevKv::All
    };
    let prefix = target.prefix();
    let res = target.res;
    let keep = move |o: &Value| {
        label.matches(&o["metadata"]["labels"])
            && field.matches(o)
            && name
                .as_deref()
                .is_none_or(|n| o["metadata"]["name"].as_str() == Some(n))
    };
    let render = move |ty: &str, obj: &Value| -> Bytes {
        let table;
        let object = if as_table && ty != "BOOKMARK" && ty != "ERROR" {
            let rv = obj["metadata"]["resourceVersion"].as_str().unwrap_or("");
            table = table::table(
                res.group,
                res.kind,
                std::slice::from_ref(obj),
                rv,
                None,
                &include,
            );
            &table
        } else {
            obj
        };
        json_line(ty, object)
    };
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(BUFFER);
    let bookmark = move |revision: i64| {
        json!({"kind": res.kind, "apiVersion": res.api_version(),
               "metadata": {"resourceVersion": revision.to_string()}})
    };
    tokio::spawn(async move {
        let deadline = Instant::now() + timeout;
        let mut revisions = store.revisions();
        // Where the stream starts: after the given revision, or after an initial listing.
        let mut last = if initial {
            let page = match registry::list(&store, &prefix, &ListOptions::default(), &keep).await {
                Ok(p) => p,
                Err(s) => {
                    let _ = tx.send(Ok(render("ERROR", &s.to_json()))).await;
                    return;
                }
            };
            for obj in page.items {
                if tx.send(Ok(render("ADDED", &obj))).await.is_err() {
                    return;
                }
            }
            page.revision
        } else {
            rv.unwrap_or_else(|| *revisions.borrow())
        };
        if send_initial == Some(true) {
            let mut b = bookmark(last);
            b["metadata"]["annotations"] = json!({"k8s.io/initial-events-end": "true"});
            if tx.send(Ok(render("BOOKMARK", &b))).await.is_err() {
                return;
            }
        }
        let mut next_bookmark = Instant::now() + BOOKMARK_EVERY;
        loop {
            let cur = *revisions.borrow_and_update();
            while last < cur {
                let events = match store.mvcc().events(last + 1, cur, STEP, prev, &prefix) {
                    Ok(ev) => ev,
                    Err(StoreError::Compacted { compact_revision }) => {
                        let s = Status::expired(format!(
                            "too old resource version: {} ({compact_revision})",
                            last
                        ));
                        let _ = tx.send(Ok(render("ERROR", &s.to_json()))).await;
                        return;
                    }
                    Err(e) => {
                        let _ = tx
                            .send(Ok(render("ERROR", &registry::store_error(e).to_json())))
                            .await;
                        return;
                    }
                };
                let full = events.len() >= STEP;
                let upto = match events.last().and_then(|e| e.kv.as_ref()) {
                    Some(kv) if full => kv.mod_revision,
                    _ => cur,
                };
                for ev in events {
                    let Some((ty, obj)) = change(&ev, &prefix, selects_all, &keep) else {
                        continue;
                    };
                    let line = match ev.kv.as_ref() {
                        Some(kv) if !as_table => shared_line(&kv.key, kv.mod_revision, ty, &obj),
                        _ => render(ty, &obj),
                    };
                    if tx.send(Ok(line)).await.is_err() {
                        return;
                    }
                }
                last = upto;
            }
            tokio::select! {
                changed = revisions.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep_until(next_bookmark) => {
                    next_bookmark = Instant::now() + BOOKMARK_EVERY;
                    if bookmarks && tx.send(Ok(render("BOOKMARK", &bookmark(last)))).await.is_err() {
                        return;
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    debug!("watch timed out");
                    return;
                }
                _ = tx.closed() => return,
            }
        }
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .map_err(|e| Status::internal(e.to_string()))
}

/// The watch event one store event becomes for a watcher, given what it filters on: an
/// object entering the selection is ADDED, leaving it is DELETED. When the watcher selects
/// everything, the key's version tells a create from an update without decoding the previous
/// object. Decoded objects come from [`Recent`], shared with the other watchers.
fn change(
    ev: &skiff_proto::mvccpb::Event,
    prefix: &[u8],
    selects_all: bool,
    keep: &impl Fn(&Value) -> bool,
) -> Option<(&'static str, Arc<Value>)> {
    let kv = ev.kv.as_ref()?;
    if !kv.key.starts_with(prefix) {
        return None;
    }
    if selects_all && kv.version > 0 {
        let obj = recent().decoded(kv)?;
        return Some((if kv.version == 1 { "ADDED" } else { "MODIFIED" }, obj));
    }
    let prev = ev
        .prev_kv
        .as_ref()
        .and_then(|p| recent().decoded(p))
        .filter(|p| keep(p));
    if kv.version == 0 {
        // A delete: the last state, stamped with the deleting revision as upstream does.
        let mut obj = Value::clone(prev?.as_ref());
        obj["metadata"]["resourceVersion"] = json!(kv.mod_revision.to_string());
        return Some(("DELETED", Arc::new(obj)));
    }
    let obj = recent().decoded(kv)?;
    match (keep(&obj), prev.is_some()) {
        (true, true) => Some(("MODIFIED", obj)),
        (true, false) => Some(("ADDED", obj)),
        (false, true) => Some(("DELETED", obj)),
        (false, false) => None,
    }
}

/// Most recent object versions whose decoded form and rendered lines are kept.
const RECENT_VERSIONS: usize = 256;

/// One object version's decoded form and its rendered lines (ADDED, MODIFIED, DELETED).
#[derive(Default)]
struct Version {
    obj: Option<Arc<Value>>,
    lines: [Option<Bytes>; 3],
}

/// Store events decoded and encoded once for every watcher: the scheduler, the controllers and
/// node agents watch the same resources, and decoding and encoding each event once per
/// watcher was most of a watch's cost. Watchers follow the same revisions at about the same
/// time, so a few hundred versions suffice; a version's key and revision name one value.
#[derive(Default)]
struct Recent {
    versions: HashMap<(Vec<u8>, i64), Version>,
    order: VecDeque<(Vec<u8>, i64)>,
}

fn recent() -> std::sync::MutexGuard<'static, Recent> {
    static RECENT: LazyLock<Mutex<Recent>> = LazyLock::new(Mutex::default);
    RECENT.lock().unwrap_or_else(|e| e.into_inner())
}

fn line_slot(ty: &str) -> Option<usize> {
    ["ADDED", "MODIFIED", "DELETED"]
        .iter()
        .position(|t| *t == ty)
}

impl Recent {
    fn version(&mut self, key: &[u8], revision: i64) -> &mut Version {
        let id = (key.to_vec(), revision);
        if !self.versions.contains_key(&id) {
            if self.order.len() >= RECENT_VERSIONS {
                if let Some(old) = self.order.pop_front() {
                    self.versions.remove(&old);
                }
            }
            self.order.push_back(id.clone());
        }
        self.versions.entry(id).or_default()
    }

    /// The stored object, decoded once.
    fn decoded(&mut self, kv: &KeyValue) -> Option<Arc<Value>> {
        let v = self.version(&kv.key, kv.mod_revision);
        if let Some(obj) = &v.obj {
            return Some(obj.clone());
        }
        let obj = Arc::new(registry::decode(kv).ok()?);
        v.obj = Some(obj.clone());
        Some(obj)
    }
}

/// The JSON line of an event about the object at `key` as of `revision`, rendered once.
fn shared_line(key: &[u8], revision: i64, ty: &'static str, obj: &Value) -> Bytes {
    let Some(slot) = line_slot(ty) else {
        return json_line(ty, obj);
    };
    if let Some(line) = &recent().version(key, revision).lines[slot] {
        return line.clone();
    }
    let line = json_line(ty, obj);
    recent().version(key, revision).lines[slot] = Some(line.clone());
    line
}

fn json_line(ty: &str, object: &Value) -> Bytes {
    let mut line = serde_json::to_vec(&Line { ty, object }).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, revision: i64) -> KeyValue {
        KeyValue {
            key: key.as_bytes().to_vec(),
            mod_revision: revision,
            version: 1,
            value: format!(r#"{{"metadata":{{"name":"{key}"}}}}"#).into_bytes(),
            ..Default::default()
        }
    }

    #[test]
    fn each_version_is_decoded_and_rendered_once_and_the_cache_is_bounded() {
        let mut r = Recent::default();
        let a = r.decoded(&kv("/t/a", 7)).unwrap();
        assert!(Arc::ptr_eq(&a, &r.decoded(&kv("/t/a", 7)).unwrap()));
        assert_eq!(a["metadata"]["resourceVersion"], "7");
        assert!(!Arc::ptr_eq(&a, &r.decoded(&kv("/t/a", 8)).unwrap()));
        for i in 0..(RECENT_VERSIONS as i64 * 2) {
            r.decoded(&kv("/t/b", 100 + i));
        }
        assert_eq!(r.versions.len(), RECENT_VERSIONS);
        assert_eq!(r.order.len(), RECENT_VERSIONS);
        let line = shared_line(b"/t/unique-key", 1, "MODIFIED", &a);
        assert!(line.starts_with(br#"{"type":"MODIFIED","object":{"#));
        let other = json!({"changed": true});
        assert_eq!(shared_line(b"/t/unique-key", 1, "MODIFIED", &other), line);
    }
}
