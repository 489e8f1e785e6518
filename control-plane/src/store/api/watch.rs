//! etcd's Watch service. Each stream reads events from the store's event log, from each
//! watcher's next revision up to the applied revision, so every event is delivered once, in
//! revision order, with bounded memory however slow the client is.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::time::Duration;

use futures::Stream;
use skiff_proto::etcdserverpb::{
    watch_create_request::FilterType, watch_request::RequestUnion, watch_server::Watch, *,
};
use skiff_proto::mvccpb::{event::EventType, Event};
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

use crate::store::mvcc::{in_range, PrevKv};
use crate::store::{Store, StoreError};

/// Events read from the log per round, which bounds one round's memory.
const EVENTS_PER_ROUND: usize = 1000;
/// Responses queued towards one client stream.
const OUT_QUEUE: usize = 64;
/// How often watchers that asked for progress notifications get one.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(600);

pub struct WatchApi {
    store: Store,
}

impl WatchApi {
    pub fn new(store: Store) -> WatchApi {
        WatchApi { store }
    }
}

struct Watcher {
    key: Vec<u8>,
    end: Vec<u8>,
    next: i64,
    prev_kv: bool,
    no_put: bool,
    no_delete: bool,
    progress: bool,
}

type Out = mpsc::Sender<Result<WatchResponse, Status>>;

#[tonic::async_trait]
impl Watch for WatchApi {
    type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchResponse, Status>> + Send>>;

    async fn watch(
        &self,
        req: Request<Streaming<WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let (tx, rx) = mpsc::channel(OUT_QUEUE);
        let store = self.store.clone();
        let input = req.into_inner();
        tokio::spawn(async move {
            if let Err(e) = run(store, input, tx.clone()).await {
                let _ = tx.send(Err(e)).await;
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}

async fn run(store: Store, mut input: Streaming<WatchRequest>, out: Out) -> Result<(), Status> {
    let mut watchers: BTreeMap<i64, Watcher> = BTreeMap::new();
    let mut next_id = 0i64;
    let mut revisions = store.revisions();
    let mut progress = tokio::time::interval(PROGRESS_INTERVAL);
    progress.tick().await;
    loop {
        tokio::select! {
            msg = input.message() => {
                let Some(req) = msg? else { return Ok(()) };
                match req.request_union {
                    Some(RequestUnion::CreateRequest(c)) => {
                        let id = if c.watch_id != 0 { c.watch_id } else {
                            while watchers.contains_key(&next_id) { next_id += 1; }
                            next_id
                        };
                        let current = store.mvcc().revision()?;
                        if watchers.contains_key(&id) {
                            send(&out, WatchResponse { header: store.header(current), watch_id: id, created: true, canceled: true,
                                cancel_reason: "etcdserver: duplicate watch ID".into(), ..Default::default() }).await?;
                            continue;
                        }
                        let w = Watcher {
                            key: c.key,
                            end: c.range_end,
                            next: if c.start_revision > 0 { c.start_revision } else { current + 1 },
                            prev_kv: c.prev_kv,
                            no_put: c.filters.contains(&(FilterType::Noput as i32)),
                            no_delete: c.filters.contains(&(FilterType::Nodelete as i32)),
                            progress: c.progress_notify,
                        };
                        send(&out, WatchResponse { header: store.header(current), watch_id: id, created: true, ..Default::default() }).await?;
                        watchers.insert(id, w);
                        catch_up(&store, &mut watchers, &out).await?;
                    }
                    Some(RequestUnion::CancelRequest(c)) if watchers.remove(&c.watch_id).is_some() => {
                            let current = store.mvcc().revision()?;
                            send(&out, WatchResponse { header: store.header(current), watch_id: c.watch_id, canceled: true, ..Default::default() }).await?;
                    }
                    Some(RequestUnion::CancelRequest(_)) => {}
                    Some(RequestUnion::ProgressRequest(_)) => {
                        catch_up(&store, &mut watchers, &out).await?;
                        let current = store.mvcc().revision()?;
                        // Watch id -1 tells clients to treat this as a broadcast progress notice.
                        send(&out, WatchResponse { header: store.header(current), watch_id: -1, ..Default::default() }).await?;
                    }
                    None => {}
                }
            }
            changed = revisions.changed() => {
                if changed.is_err() { return Err(StoreError::Stopped.into()); }
                catch_up(&store, &mut watchers, &out).await?;
            }
            _ = progress.tick() => {
                catch_up(&store, &mut watchers, &out).await?;
                let current = store.mvcc().revision()?;
                for (id, w) in &watchers {
                    if w.progress {
                        send(&out, WatchResponse { header: store.header(current), watch_id: *id, ..Default::default() }).await?;
                    }
                }
            }
        }
    }
}

async fn send(out: &Out, resp: WatchResponse) -> Result<(), Status> {
    out.send(Ok(resp))
        .await
        .map_err(|_| Status::cancelled("watch stream closed"))
}

/// Delivers every event between each watcher's next revision and the applied revision.
async fn catch_up(
    store: &Store,
    watchers: &mut BTreeMap<i64, Watcher>,
    out: &Out,
) -> Result<(), Status> {
    loop {
        let current = store.mvcc().revision()?;
        let Some(from) = watchers
            .values()
            .map(|w| w.next)
            .filter(|n| *n <= current)
            .min()
        else {
            return Ok(());
        };
        let events = match store.mvcc().events(
            from,
            current,
            EVENTS_PER_ROUND,
            if watchers.values().any(|w| w.prev_kv) {
                PrevKv::All
            } else {
                PrevKv::None
            },
            b"",
        ) {
            Ok(e) => e,
            Err(StoreError::Compacted { compact_revision }) => {
                let gone: Vec<i64> = watchers
                    .iter()
                    .filter(|(_, w)| w.next < compact_revision)
                    .map(|(id, _)| *id)
                    .collect();
                for id in gone {
                    watchers.remove(&id);
                    send(
                        out,
                        WatchResponse {
                            header: store.header(current),
                            watch_id: id,
                            canceled: true,
                            compact_revision,
                            cancel_reason: StoreError::Compacted { compact_revision }.to_string(),
                            ..Default::default()
                        },
                    )
                    .await?;
                }
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let full = events.len() >= EVENTS_PER_ROUND;
        let reached = if full {
            events
                .last()
                .and_then(|e| e.kv.as_ref())
                .map(|kv| kv.mod_revision)
                .unwrap_or(current)
        } else {
            current
        };
        for (id, w) in watchers.iter_mut() {
            if w.next > reached {
                continue;
            }
            let mine: Vec<Event> = events
                .iter()
                .filter(|e| {
                    let Some(kv) = e.kv.as_ref() else {
                        return false;
                    };
                    let is_put = e.r#type == EventType::Put as i32;
                    // A full round may end mid-revision; the rest of it comes next round.
                    let in_round = !full || kv.mod_revision < reached;
                    kv.mod_revision >= w.next
                        && in_round
                        && in_range(&kv.key, &w.key, &w.end)
                        && !(is_put && w.no_put)
                        && (is_put || !w.no_delete)
                })
                .map(|e| {
                    if w.prev_kv {
                        e.clone()
                    } else {
                        Event {
                            prev_kv: None,
                            ..e.clone()
                        }
                    }
                })
                .collect();
            w.next = if full { reached } else { current + 1 };
            if !mine.is_empty() {
                send(
                    out,
                    WatchResponse {
                        header: store.header(current),
                        watch_id: *id,
                        events: mine,
                        ..Default::default()
                    },
                )
                .await?;
            }
        }
        if !full {
            return Ok(());
        }
    }
}
