//! End-to-end fault tests for `skiff store`: leader crashes under load,
//! linearizability under kills and partitions, membership changes, snapshot
//! catch-up of a lagging member, and rejection of bad input.
//!
//! Each test is a plain `#[test]` that drives the (blocking) harness on the
//! test thread and runs its gRPC clients on a private tokio runtime.

mod common;

use common::cluster::*;
use common::linearizability::{CheckResult, Input, Output, Recorder};
use rand::Rng;
use skiff_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use skiff_proto::etcdserverpb::kv_client::KvClient;
use skiff_proto::etcdserverpb::request_op::Request as OpRequest;
use skiff_proto::etcdserverpb::{Compare, PutRequest, RangeRequest, RequestOp, TxnRequest};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::transport::{Channel, Endpoint};
use tonic::Code;

type Kv = KvClient<Channel>;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A lazily connecting client for one member (must be called inside a
/// runtime context). Every request has a client-side deadline of `timeout`.
fn kv_client(url: &str, timeout: Duration) -> Kv {
    let ch = Endpoint::from_shared(url.to_string())
        .expect("endpoint url")
        .connect_timeout(Duration::from_millis(500))
        .timeout(timeout)
        .connect_lazy();
    KvClient::new(ch)
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX)
}

fn urls(c: &Cluster, idx: &[usize]) -> Vec<String> {
    idx.iter()
        .map(|&i| c.member(i).client_url.clone())
        .collect()
}

fn put_req(key: &str, value: impl Into<Vec<u8>>) -> PutRequest {
    PutRequest {
        key: key.as_bytes().to_vec(),
        value: value.into(),
        ..Default::default()
    }
}

fn get_req(key: &str, serializable: bool) -> RangeRequest {
    RangeRequest {
        key: key.as_bytes().to_vec(),
        serializable,
        ..Default::default()
    }
}

/// Range over every key starting with `prefix`.
fn prefix_req(prefix: &str, serializable: bool, count_only: bool) -> RangeRequest {
    let mut end = prefix.as_bytes().to_vec();
    *end.last_mut().unwrap() += 1;
    RangeRequest {
        key: prefix.as_bytes().to_vec(),
        range_end: end,
        serializable,
        count_only,
        ..Default::default()
    }
}

fn s(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Keys of a linearizable prefix range, trying each endpoint until one answers.
async fn keys_with_prefix(clients: &mut [Kv], prefix: &str) -> BTreeSet<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = String::new();
    while Instant::now() < deadline {
        for c in clients.iter_mut() {
            match c.range(prefix_req(prefix, false, false)).await {
                Ok(r) => {
                    let r = r.into_inner();
                    return r.kvs.iter().map(|kv| s(&kv.key)).collect();
                }
                Err(e) => last = e.to_string(),
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no member answered a linearizable range over {prefix:?}: {last}");
}

/// A writer task: writes `{prefix}{id}-{n}` for n = 0, 1, ... to whichever of
/// `clients` answers (switching endpoint on error and retrying the same key),
/// recording every acknowledged key in `acked`, until `stop` is set.
fn spawn_writer(
    rt: &tokio::runtime::Runtime,
    id: usize,
    prefix: String,
    urls: Arc<Mutex<Vec<String>>>,
    acked: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(usize, usize)> {
    rt.spawn(async move {
        let mut cur = id;
        let mut n = 0usize;
        let mut errors = 0usize;
        let mut clients: Vec<(String, Kv)> = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            // Pick up endpoint list changes (membership tests).
            let list = urls.lock().unwrap().clone();
            if clients.len() != list.len() || clients.iter().zip(&list).any(|((u, _), l)| u != l) {
                clients = list
                    .iter()
                    .map(|u| (u.clone(), kv_client(u, Duration::from_secs(2))))
                    .collect();
            }
            if clients.is_empty() {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            let key = format!("{prefix}{id}-{n}");
            let k = cur % clients.len();
            match clients[k].1.put(put_req(&key, format!("v{n}"))).await {
                Ok(_) => {
                    acked.lock().unwrap().push(key);
                    n += 1;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err(_) => {
                    errors += 1;
                    cur += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        (n, errors)
    })
}

/// Polls a serializable get of `key` on `url` alone until it returns the key.
fn wait_serializable_has(
    rt: &tokio::runtime::Runtime,
    url: &str,
    key: &str,
    timeout: Duration,
) -> Result<(), String> {
    rt.block_on(async {
        let mut c = kv_client(url, Duration::from_secs(2));
        let deadline = Instant::now() + timeout;
        loop {
            let last = match c.range(get_req(key, true)).await {
                Ok(r) if !r.get_ref().kvs.is_empty() => return Ok(()),
                Ok(r) => format!(
                    "absent at revision {:?}",
                    r.get_ref().header.as_ref().map(|h| h.revision)
                ),
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                return Err(format!(
                    "{key:?} not served by {url} within {timeout:?}: {last}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

// ---------------------------------------------------------------------------
// 1. crash the leader under concurrent writes
// ---------------------------------------------------------------------------

#[test]
fn crash_leader_under_concurrent_writes() {
    let name = "crash_leader_under_concurrent_writes";
    if !require_tool(name, "etcdctl") {
        return;
    }
    let mut c = Cluster::start(3, ClusterOptions::default().label(name));
    let leader = c.wait_healthy(Duration::from_secs(30));
    let rt = runtime();
    let all = Arc::new(Mutex::new(urls(&c, &[0, 1, 2])));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..8)
        .map(|i| spawn_writer(&rt, i, "w".into(), all.clone(), acked.clone(), stop.clone()))
        .collect();

    // Let the writers get going.
    assert!(
        wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
            acked.lock().unwrap().len() >= 100
        }),
        "writers made no progress: {} acked",
        acked.lock().unwrap().len()
    );

    let before_kill = acked.lock().unwrap().len();
    let t0 = Instant::now();
    c.kill(leader);
    let survivors: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let surv_urls = urls(&c, &survivors);
    let failover = rt.block_on(async {
        let mut clients: Vec<Kv> = surv_urls
            .iter()
            .map(|u| kv_client(u, Duration::from_millis(500)))
            .collect();
        let mut n = 0;
        loop {
            for cl in clients.iter_mut() {
                n += 1;
                if cl.put(put_req(&format!("probe-{n}"), "x")).await.is_ok() {
                    return t0.elapsed();
                }
            }
            if t0.elapsed() > Duration::from_secs(15) {
                panic!("no write acknowledged within 15 s of killing the leader");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    eprintln!(
        "[{name}] killed leader m{leader} with {before_kill} writes acked; first write acked after the kill: {failover:?}"
    );

    // Writers keep going after the failover, too.
    let after_failover = acked.lock().unwrap().len();
    assert!(
        wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
            acked.lock().unwrap().len() >= after_failover + 50
        }),
        "writers made no progress after the failover"
    );

    c.restart(leader);
    let last = acked.lock().unwrap().last().cloned().unwrap();
    let leader_url = c.member(leader).client_url.clone();
    if let Err(e) = wait_serializable_has(&rt, &leader_url, &last, Duration::from_secs(30)) {
        panic!("restarted member {leader} did not catch up: {e}");
    }

    stop.store(true, Ordering::Relaxed);
    let mut totals = (0, 0);
    for w in writers {
        let (n, e) = rt.block_on(w).expect("writer task");
        totals.0 += n;
        totals.1 += e;
    }
    let acked: BTreeSet<String> = acked.lock().unwrap().iter().cloned().collect();
    let present = rt.block_on(async {
        let mut clients: Vec<Kv> = urls(&c, &[0, 1, 2])
            .iter()
            .map(|u| kv_client(u, Duration::from_secs(3)))
            .collect();
        keys_with_prefix(&mut clients, "w").await
    });
    let missing: Vec<&String> = acked.difference(&present).collect();
    eprintln!(
        "[{name}] acked {} writes ({} client-side errors), {} keys present, {} missing",
        acked.len(),
        totals.1,
        present.len(),
        missing.len()
    );
    assert!(
        missing.is_empty(),
        "{} acknowledged writes are missing, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(20)]
    );
    assert!(
        failover < Duration::from_secs(2),
        "failover took {failover:?} (first write acknowledged after killing the leader), want < 2 s"
    );
}

// ---------------------------------------------------------------------------
// 2. linearizability under leader kills and partitions
// ---------------------------------------------------------------------------

/// One random operation against `kv`, recorded in `rec`.
/// Returns what the client observed (None: unknown outcome).
async fn lin_op(rec: &Recorder, client: usize, kv: &mut Kv, input: Input) -> Option<Output> {
    let p = rec.begin(client, input.clone());
    let res: Result<Output, tonic::Status> = match &input {
        Input::Put { key, value } => kv
            .put(put_req(key, value.as_bytes().to_vec()))
            .await
            .map(|_| Output::Put),
        Input::Get { key } => kv
            .range(get_req(key, false))
            .await
            .map(|r| Output::Get(r.into_inner().kvs.first().map(|kv| s(&kv.value)))),
        Input::Cas { key, expected, new } => {
            let cmp = match expected {
                Some(v) => Compare {
                    key: key.as_bytes().to_vec(),
                    target: CompareTarget::Value as i32,
                    result: CompareResult::Equal as i32,
                    target_union: Some(TargetUnion::Value(v.as_bytes().to_vec())),
                    ..Default::default()
                },
                None => Compare {
                    key: key.as_bytes().to_vec(),
                    target: CompareTarget::Version as i32,
                    result: CompareResult::Equal as i32,
                    target_union: Some(TargetUnion::Version(0)),
                    ..Default::default()
                },
            };
            let txn = TxnRequest {
                compare: vec![cmp],
                success: vec![RequestOp {
                    request: Some(OpRequest::RequestPut(put_req(key, new.as_bytes().to_vec()))),
                }],
                failure: vec![],
            };
            kv.txn(txn)
                .await
                .map(|r| Output::Cas(r.into_inner().succeeded))
        }
    };
    match res {
        Ok(out) => {
            rec.end(p, out.clone());
            Some(out)
        }
        Err(_) => {
            rec.end_unknown(p);
            None
        }
    }
}

#[test]
fn linearizable_under_kills_and_partitions() {
    let name = "linearizable_under_kills_and_partitions";
    if !require_root(name) || !require_tool(name, "etcdctl") || !require_tool(name, "nft") {
        return;
    }
    let mut c = Cluster::start(3, ClusterOptions::default().label(name));
    c.wait_healthy(Duration::from_secs(30));
    let rt = runtime();
    let rec = Arc::new(Recorder::new());
    let stop = Arc::new(AtomicBool::new(false));
    let all = urls(&c, &[0, 1, 2]);
    let keys = ["k0", "k1", "k2"];
    let clients: Vec<_> = (0..6)
        .map(|id| {
            let rec = rec.clone();
            let stop = stop.clone();
            let all = all.clone();
            rt.spawn(async move {
                let mut kvs: Vec<Kv> = all
                    .iter()
                    .map(|u| kv_client(u, Duration::from_secs(3)))
                    .collect();
                let mut cur = id % kvs.len();
                let mut n = 0u64;
                let mut seen: [Option<String>; 3] = Default::default();
                while !stop.load(Ordering::Relaxed) {
                    let (k, choice) = {
                        let mut r = rand::thread_rng();
                        (r.gen_range(0..3usize), r.gen_range(0..3u8))
                    };
                    n += 1;
                    let key = keys[k].to_string();
                    let value = format!("c{id}-{n}");
                    let input = match choice {
                        0 => Input::Put {
                            key,
                            value: value.clone(),
                        },
                        1 => Input::Get { key },
                        _ => Input::Cas {
                            key,
                            expected: seen[k].clone(),
                            new: value.clone(),
                        },
                    };
                    match lin_op(&rec, id, &mut kvs[cur], input.clone()).await {
                        // Remember a plausible current value for the next CAS.
                        Some(Output::Get(v)) => seen[k] = v,
                        Some(Output::Put) | Some(Output::Cas(true)) => seen[k] = Some(value),
                        Some(_) => {}
                        None => cur = (cur + 1) % kvs.len(),
                    }
                    tokio::time::sleep(Duration::from_millis(15)).await;
                }
            })
        })
        .collect();

    // Nemesis.
    let start = Instant::now();
    let mut rng = rand::thread_rng();
    let mut round = 0;
    while start.elapsed() < Duration::from_secs(20) {
        round += 1;
        let leader = c.wait_leader(Duration::from_secs(20));
        eprintln!("[{name}] round {round}: kill leader m{leader}");
        c.kill(leader);
        c.wait_leader(Duration::from_secs(20));
        c.restart(leader);
        c.wait_healthy(Duration::from_secs(30));
        let victim = rng.gen_range(0..3);
        eprintln!("[{name}] round {round}: isolate m{victim}");
        let mut p = c.isolate(victim);
        // Fault duration (not synchronisation): keep the partition a while.
        std::thread::sleep(Duration::from_secs(3));
        p.heal();
        c.wait_healthy(Duration::from_secs(30));
    }
    stop.store(true, Ordering::Relaxed);
    for h in clients {
        rt.block_on(h).expect("client task");
    }
    let history = rec.history();
    let unknown = history.iter().filter(|o| o.is_unknown()).count();
    eprintln!(
        "[{name}] {} nemesis rounds; checking {} operations ({unknown} unknown)",
        round,
        history.len()
    );
    let t = Instant::now();
    let verdict = common::linearizability::check(&history, Duration::from_secs(30));
    eprintln!("[{name}] check took {:?}: {verdict}", t.elapsed());
    match verdict {
        CheckResult::Ok => {}
        CheckResult::Inconclusive => panic!(
            "linearizability check was inconclusive within 30 s on {} ops ({unknown} unknown): counts as a failure",
            history.len()
        ),
        v => panic!("{v}"),
    }
}

// ---------------------------------------------------------------------------
// 3. membership: grow 1 -> 3 through learners, then remove one
// ---------------------------------------------------------------------------

/// `(name, is_learner)` of every member in `etcdctl member list -w json`.
fn member_list(c: &Cluster) -> Result<Vec<(String, bool)>, String> {
    let out = c.etcdctl(&["member", "list", "-w", "json"]);
    if !out.status.success() {
        return Err(describe(&out));
    }
    let text = stdout_str(&out);
    let json = Json::parse(text.trim()).map_err(|e| format!("{e}: {text}"))?;
    let members = json
        .get("members")
        .and_then(Json::as_array)
        .ok_or_else(|| format!("no members in {text}"))?;
    Ok(members
        .iter()
        .map(|m| {
            (
                m.get("name")
                    .and_then(Json::as_str)
                    .unwrap_or("")
                    .to_string(),
                m.get("isLearner").and_then(Json::as_bool).unwrap_or(false),
            )
        })
        .collect())
}

#[test]
fn membership_grow_learner_promote_remove() {
    let name = "membership_grow_learner_promote_remove";
    if !require_tool(name, "etcdctl") {
        return;
    }
    let mut c = Cluster::start(1, ClusterOptions::default().label(name));
    c.wait_healthy(Duration::from_secs(30));
    let rt = runtime();
    let voters = Arc::new(Mutex::new(urls(&c, &[0])));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(
        &rt,
        0,
        "g".into(),
        voters.clone(),
        acked.clone(),
        stop.clone(),
    );
    let progress = |min_more: usize, what: &str| {
        let base = acked.lock().unwrap().len();
        assert!(
            wait_until(Duration::from_secs(15), Duration::from_millis(20), || {
                acked.lock().unwrap().len() >= base + min_more
            }),
            "writes stalled {what} ({} acked)",
            acked.lock().unwrap().len()
        );
    };
    progress(20, "at start");

    for (idx, m) in [(1usize, "m1"), (2, "m2")] {
        let i = c.add_member(m, true);
        assert_eq!(i, idx);
        // The learner has caught up once it serves the latest acknowledged key.
        let last = acked.lock().unwrap().last().cloned().unwrap();
        let url = c.member(i).client_url.clone();
        if let Err(e) = wait_serializable_has(&rt, &url, &last, Duration::from_secs(20)) {
            panic!("learner {m} did not catch up: {e}");
        }
        let res = wait_for(Duration::from_secs(20), Duration::from_millis(300), || {
            let out = c.promote(i);
            if out.status.success() {
                Ok(())
            } else {
                Err(describe(&out))
            }
        });
        if let Err(e) = res {
            panic!("promoting {m}: {e}");
        }
        voters.lock().unwrap().push(url);
        c.wait_healthy(Duration::from_secs(30));
        progress(20, &format!("after promoting {m}"));
    }
    let list = member_list(&c).expect("member list");
    assert_eq!(list.len(), 3, "member list: {list:?}");
    assert!(list.iter().all(|(_, l)| !l), "a learner is left: {list:?}");

    // Remove m2 (whatever its role), keep writing through m0 and m1.
    *voters.lock().unwrap() = urls(&c, &[0, 1]);
    c.remove_member(2);
    c.kill(2);
    c.wait_healthy(Duration::from_secs(30));
    progress(20, "after removing m2");
    let list = wait_for(Duration::from_secs(10), Duration::from_millis(200), || {
        let l = member_list(&c)?;
        if l.len() == 2 {
            Ok(l)
        } else {
            Err(format!("{l:?}"))
        }
    })
    .expect("member list shows 2 members");
    assert!(list.iter().all(|(n, _)| n != "m2"), "{list:?}");

    stop.store(true, Ordering::Relaxed);
    let (n, errors) = rt.block_on(writer).expect("writer");
    let acked: BTreeSet<String> = acked.lock().unwrap().iter().cloned().collect();
    let present = rt.block_on(async {
        let mut clients: Vec<Kv> = urls(&c, &[0, 1])
            .iter()
            .map(|u| kv_client(u, Duration::from_secs(3)))
            .collect();
        keys_with_prefix(&mut clients, "g").await
    });
    let missing: Vec<&String> = acked.difference(&present).collect();
    eprintln!(
        "[{name}] {n} writes acked ({errors} client errors), {} present, {} missing; final members {list:?}",
        present.len(),
        missing.len()
    );
    assert!(
        missing.is_empty(),
        "acknowledged writes missing: {:?}",
        &missing[..missing.len().min(20)]
    );
}

// ---------------------------------------------------------------------------
// 4. a member restarted after the log was compacted catches up by snapshot
// ---------------------------------------------------------------------------

fn count_in_log(path: &std::path::Path, needle: &str) -> usize {
    std::fs::read_to_string(path)
        .map(|t| t.matches(needle).count())
        .unwrap_or(0)
}

#[test]
fn lagging_member_catches_up_by_snapshot() {
    let name = "lagging_member_catches_up_by_snapshot";
    if !require_tool(name, "etcdctl") {
        return;
    }
    let mut c = Cluster::start(3, ClusterOptions::default().snapshot_count(50).label(name));
    let leader = c.wait_healthy(Duration::from_secs(30));
    let lagging = (leader + 1) % 3;
    let live: Vec<usize> = (0..3).filter(|&i| i != lagging).collect();
    c.kill(lagging);

    // Far more entries than the snapshot interval, so the leader compacts its log past the
    // stopped member's last index.
    let rt = runtime();
    let written = rt.block_on(async {
        let mut clients: Vec<Kv> = urls(&c, &live)
            .iter()
            .map(|u| kv_client(u, Duration::from_secs(3)))
            .collect();
        let mut written = Vec::new();
        let mut n = 0usize;
        while written.len() < 600 {
            let key = format!("s{:04}", written.len());
            let k = n % clients.len();
            n += 1;
            if clients[k].put(put_req(&key, vec![b'x'; 512])).await.is_ok() {
                written.push(key);
            } else {
                assert!(n < 10_000, "writes keep failing with one member down");
            }
        }
        written
    });

    let log = c.member(lagging).log_path.clone();
    let before = count_in_log(&log, "applying snapshot from leader");
    c.restart(lagging);
    let url = c.member(lagging).client_url.clone();
    let last = written.last().unwrap().clone();
    if let Err(e) = wait_serializable_has(&rt, &url, &last, Duration::from_secs(30)) {
        panic!("restarted member did not catch up: {e}");
    }
    let after = count_in_log(&log, "applying snapshot from leader");
    assert!(
        after > before,
        "m{lagging} caught up without installing a snapshot; the log was not compacted past it"
    );
    // Everything is there, served by the caught-up member alone.
    let count = rt.block_on(async {
        let mut kv = kv_client(&url, Duration::from_secs(3));
        kv.range(prefix_req("s", true, true))
            .await
            .expect("count on the caught-up member")
            .into_inner()
            .count
    });
    assert_eq!(
        count,
        written.len() as i64,
        "keys on m{lagging} after the snapshot"
    );
    // And it takes part in consensus again: the cluster survives losing another member.
    c.kill(live[0]);
    rt.block_on(async {
        let mut kv = kv_client(&url, Duration::from_secs(3));
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            match kv.put(put_req("after-snapshot", "y")).await {
                Ok(_) => break,
                Err(e) if Instant::now() > deadline => {
                    panic!("no write with the caught-up member in the quorum: {e}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
}

// ---------------------------------------------------------------------------
// 5. bad input gets a clean error and applies nothing
// ---------------------------------------------------------------------------

fn txn_put(key: &str, value: &str) -> RequestOp {
    RequestOp {
        request: Some(OpRequest::RequestPut(put_req(key, value))),
    }
}

/// The header revision and the number of keys under "bad", read linearizably.
async fn store_state(kv: &mut Kv) -> (i64, i64) {
    let r = kv
        .range(prefix_req("bad", false, true))
        .await
        .expect("range")
        .into_inner();
    (r.header.map(|h| h.revision).unwrap_or(-1), r.count)
}

fn expect_rejected<T: std::fmt::Debug>(
    what: &str,
    res: Result<tonic::Response<T>, tonic::Status>,
    code: Code,
    message: &str,
) {
    match res {
        Ok(r) => panic!("{what}: accepted: {r:?}"),
        Err(st) => {
            assert_eq!(st.code(), code, "{what}: {st:?}");
            assert!(
                st.message().contains(message),
                "{what}: message {:?} lacks {message:?}",
                st.message()
            );
        }
    }
}

#[test]
fn bad_input_is_rejected_cleanly() {
    let name = "bad_input_is_rejected_cleanly";
    if !require_tool(name, "etcdctl") {
        return;
    }
    let mut c = Cluster::start(3, ClusterOptions::default().label(name));
    let leader = c.wait_healthy(Duration::from_secs(30));
    let rt = runtime();
    let follower = (leader + 1) % 3;
    let url = c.member(follower).client_url.clone();
    rt.block_on(async {
        let mut kv = kv_client(&url, Duration::from_secs(10));
        kv.put(put_req("bad/seed", "ok")).await.expect("seed put");
        let start = store_state(&mut kv).await;

        let limit = 3 * 1024 * 1024 / 2;
        expect_rejected(
            "value over 1.5 MiB",
            kv.put(put_req("bad/big", vec![b'x'; limit + 1024])).await,
            Code::InvalidArgument,
            "request is too large",
        );
        let huge = kv.put(put_req("bad/huge", vec![b'x'; 8 * limit])).await;
        assert!(huge.is_err(), "a 12 MiB value was accepted");

        expect_rejected(
            "empty key",
            kv.put(put_req("", "v")).await,
            Code::InvalidArgument,
            "key is not provided",
        );

        // Compare on VALUE carrying a version: etcd clients never send it, but a raw one can.
        let malformed = TxnRequest {
            compare: vec![Compare {
                key: b"bad/seed".to_vec(),
                target: CompareTarget::Value as i32,
                result: CompareResult::Equal as i32,
                target_union: Some(TargetUnion::Version(1)),
                ..Default::default()
            }],
            success: vec![txn_put("bad/from-malformed", "x")],
            failure: vec![txn_put("bad/from-malformed", "y")],
        };
        expect_rejected(
            "malformed compare",
            kv.txn(malformed).await,
            Code::InvalidArgument,
            "malformed compare",
        );
        let unknown_target = TxnRequest {
            compare: vec![Compare {
                key: b"bad/seed".to_vec(),
                target: 42,
                result: CompareResult::Equal as i32,
                target_union: Some(TargetUnion::Version(1)),
                ..Default::default()
            }],
            success: vec![txn_put("bad/from-unknown", "x")],
            ..Default::default()
        };
        expect_rejected(
            "unknown compare target",
            kv.txn(unknown_target).await,
            Code::InvalidArgument,
            "compare target",
        );

        // One bad op among good ones rejects the whole transaction.
        let partly_bad = TxnRequest {
            success: vec![
                txn_put("bad/first", "1"),
                txn_put("", "2"),
                txn_put("bad/third", "3"),
            ],
            ..Default::default()
        };
        expect_rejected(
            "txn with an empty key",
            kv.txn(partly_bad).await,
            Code::InvalidArgument,
            "key is not provided",
        );
        let too_many = TxnRequest {
            success: (0..129)
                .map(|i| txn_put(&format!("bad/op{i}"), "x"))
                .collect(),
            ..Default::default()
        };
        expect_rejected(
            "129 ops",
            kv.txn(too_many).await,
            Code::InvalidArgument,
            "too many operations in txn request",
        );
        let duplicate = TxnRequest {
            success: vec![txn_put("bad/dup", "1"), txn_put("bad/dup", "2")],
            ..Default::default()
        };
        expect_rejected(
            "duplicate key",
            kv.txn(duplicate).await,
            Code::InvalidArgument,
            "duplicate key",
        );

        assert_eq!(
            store_state(&mut kv).await,
            start,
            "(revision, keys under bad/) changed after rejected requests"
        );
        // The member still works.
        kv.put(put_req("bad/after", "ok"))
            .await
            .expect("put after bad input");
    });

    // A member that has lost quorum refuses writes and applies nothing.
    let others: Vec<usize> = (0..3).filter(|&i| i != follower).collect();
    for &i in &others {
        c.kill(i);
    }
    rt.block_on(async {
        let mut kv = kv_client(&url, Duration::from_secs(15));
        let before = kv
            .range(prefix_req("bad", true, true))
            .await
            .expect("serializable count")
            .into_inner();
        let t = Instant::now();
        let res = kv.put(put_req("bad/no-quorum", "x")).await;
        let err = res.expect_err("a put without quorum was acknowledged");
        assert!(
            err.message().starts_with("etcdserver:"),
            "want an etcdserver error without quorum, got {err:?}"
        );
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the error took {:?}",
            t.elapsed()
        );
        let after = kv
            .range(prefix_req("bad", true, true))
            .await
            .expect("serializable count")
            .into_inner();
        assert_eq!(after.count, before.count, "a refused write became visible");
        assert_eq!(
            after.header.map(|h| h.revision),
            before.header.map(|h| h.revision),
            "the revision moved without quorum"
        );
        let get = kv.range(get_req("bad/seed", false)).await;
        assert!(
            get.is_err(),
            "a linearizable read succeeded without quorum: {get:?}"
        );
    });
}
