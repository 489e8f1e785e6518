//! Watch correctness across store leader changes: N watchers on the API server see every change
//! to a namespace's configmaps in order and exactly once while a writer creates, updates and
//! deletes them and the store's leader is moved (a transfer), killed (kill -9) and moved again
//! to the restarted member. The watchers' streams must equal each other, contain every
//! acknowledged write, and equal the store's own history as another member's etcd watch reports
//! it; the state they end at must be the store's state at the last acknowledged revision.

mod common;

use common::cluster::*;
use common::control_plane::{admin_curl, Init, StoreMember};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const NS: &str = "watch-failover";
const KEY_PREFIX: &str = "/registry/core/configmaps/watch-failover/";
/// The root CA publisher's ConfigMap, which every namespace gets; not the writer's.
const ROOT_CA: &str = "kube-root-ca.crt";
const WATCHERS: usize = 5;
/// Distinct configmap names the writer cycles through.
const NAMES: u64 = 12;
/// Writes before the first leader change, between changes, and after the last.
const PHASE: usize = 70;

/// One change as a watcher (or the store) reports it; `op` is the writer's operation number
/// carried in the object's data (for a deletion: the deleted object's last one).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Change {
    ty: &'static str,
    name: String,
    rv: i64,
    op: u64,
}

fn event_type(s: &str) -> &'static str {
    match s {
        "ADDED" => "ADDED",
        "MODIFIED" => "MODIFIED",
        "DELETED" => "DELETED",
        "BOOKMARK" => "BOOKMARK",
        "ERROR" => "ERROR",
        _ => "UNKNOWN",
    }
}

fn object_change(ty: &'static str, obj: &Json) -> Result<Change, String> {
    let name = obj
        .path(&["metadata", "name"])
        .and_then(Json::as_str)
        .ok_or("no metadata.name")?;
    let rv = obj
        .path(&["metadata", "resourceVersion"])
        .and_then(Json::as_str)
        .and_then(|s| s.parse().ok())
        .ok_or("no metadata.resourceVersion")?;
    let op = obj
        .path(&["data", "op"])
        .and_then(Json::as_str)
        .and_then(|s| s.parse().ok())
        .ok_or("no data.op")?;
    Ok(Change {
        ty,
        name: name.to_string(),
        rv,
        op,
    })
}

/// The API server reached with curl and the admin client certificate.
#[derive(Clone)]
struct Api {
    base: String,
    pki: PathBuf,
}

impl Api {
    fn curl(&self) -> Command {
        admin_curl(&self.pki)
    }

    /// One request: Ok((status, body)) when an HTTP answer came back, Err for transport
    /// errors and timeouts.
    fn call(&self, method: &str, path: &str, body: Option<&str>) -> Result<(u16, Json), String> {
        let mut cmd = self.curl();
        cmd.args([
            "-sS",
            "--max-time",
            "20",
            "-w",
            "\n%{http_code}",
            "-X",
            method,
        ])
        .args(["-H", "Content-Type: application/json"]);
        if body.is_some() {
            cmd.args(["--data-binary", "@-"]);
        }
        cmd.arg(format!("{}{path}", self.base));
        let out = run_with_timeout(&mut cmd, body.map(str::as_bytes), Duration::from_secs(30));
        if !out.status.success() {
            return Err(describe(&out));
        }
        let text = stdout_str(&out);
        let (body, code) = text.rsplit_once('\n').ok_or_else(|| describe(&out))?;
        let code: u16 = code.trim().parse().map_err(|_| describe(&out))?;
        if code == 0 {
            return Err(describe(&out));
        }
        Ok((code, Json::parse(body.trim()).unwrap_or(Json::Null)))
    }

    /// A request that must succeed (retried through elections); returns the body.
    fn must(&self, method: &str, path: &str, body: Option<&str>) -> Json {
        wait_for(
            Duration::from_secs(30),
            Duration::from_millis(200),
            || match self.call(method, path, body)? {
                (200..=299, json) => Ok(json),
                (code, json) => Err(format!("{code}: {json:?}")),
            },
        )
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// A streaming watch of the test namespace's configmaps from `rv`, read line by line.
    fn watch(&self, rv: i64, log: PathBuf) -> LineReader {
        LineReader::spawn(
            self.curl().args(["-sSN"]).arg(format!(
                "{}/api/v1/namespaces/{NS}/configmaps?watch=true&resourceVersion={rv}\
                 &allowWatchBookmarks=false&timeoutSeconds=600",
                self.base
            )),
            Some(log),
        )
    }
}

/// One watcher's stream, parsed as it is read.
struct Watcher {
    lines: LineReader,
    changes: Vec<Change>,
}

impl Watcher {
    fn take(&mut self, line: &str) {
        let json = Json::parse(line).unwrap_or_else(|e| panic!("watch line {line:?}: {e}"));
        let ty = event_type(json.get("type").and_then(Json::as_str).unwrap_or(""));
        assert!(
            matches!(ty, "ADDED" | "MODIFIED" | "DELETED"),
            "unexpected watch event {line}"
        );
        let obj = json.get("object").expect("event object");
        if obj.path(&["metadata", "name"]).and_then(Json::as_str) == Some(ROOT_CA) {
            return;
        }
        let change = object_change(ty, obj).unwrap_or_else(|e| panic!("{e} in {line}"));
        self.changes.push(change);
    }

    fn last_rv(&self) -> i64 {
        self.changes.last().map_or(0, |c| c.rv)
    }

    /// Reads until an event at `rv` or later has arrived; false if `timeout` passes first.
    fn wait_rv(&mut self, rv: i64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.last_rv() < rv {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.next_line(left) {
                Some(l) => self.take(&l),
                None => return false,
            }
        }
        true
    }
}

/// `etcdctl endpoint status` on one endpoint: (member id, leader id).
fn status(endpoint: &str) -> Result<(u64, u64), String> {
    let out = run_with_timeout(
        Command::new("etcdctl").env("ETCDCTL_API", "3").args([
            &format!("--endpoints={endpoint}"),
            "--command-timeout=2s",
            "endpoint",
            "status",
            "-w",
            "json",
        ]),
        None,
        Duration::from_secs(10),
    );
    if !out.status.success() {
        return Err(describe(&out));
    }
    let json = Json::parse(stdout_str(&out).trim())?;
    let st = json
        .as_array()
        .and_then(|a| a.first())
        .and_then(|s| s.get("Status"))
        .ok_or("no Status")?;
    let id = st.path(&["header", "member_id"]).and_then(Json::as_u64);
    let leader = st.get("leader").and_then(Json::as_u64).unwrap_or(0);
    Ok((id.ok_or("no member id")?, leader))
}

/// Waits until every endpoint answers and all name the same leader, one `accept` likes.
fn wait_leader(endpoints: &[&str], accept: impl Fn(u64) -> bool) -> u64 {
    wait_for(Duration::from_secs(30), Duration::from_millis(100), || {
        let leaders = endpoints
            .iter()
            .map(|e| status(e).map(|s| s.1))
            .collect::<Result<Vec<_>, _>>()?;
        match leaders[0] {
            l if l != 0 && leaders.iter().all(|x| *x == l) && accept(l) => Ok(l),
            _ => Err(format!("leaders: {leaders:x?}")),
        }
    })
    .unwrap_or_else(|e| panic!("no agreed leader on {endpoints:?}: {e}"))
}

/// Moves leadership to `to` (repeating the request until it takes) and waits for all
/// `endpoints` to agree.
fn move_leader(endpoints: &[&str], to: u64) {
    let all = endpoints.join(",");
    wait_for(Duration::from_secs(30), Duration::from_millis(300), || {
        let leaders = endpoints
            .iter()
            .map(|e| status(e).map(|s| s.1))
            .collect::<Result<Vec<_>, _>>()?;
        if leaders.iter().all(|l| *l == to) {
            return Ok(());
        }
        let out = run_with_timeout(
            Command::new("etcdctl").env("ETCDCTL_API", "3").args([
                &format!("--endpoints={all}"),
                "--command-timeout=3s",
                "move-leader",
                &format!("{to:x}"),
            ]),
            None,
            Duration::from_secs(10),
        );
        Err(format!(
            "leaders {leaders:x?}; move-leader: {}",
            describe(&out)
        ))
    })
    .unwrap_or_else(|e| panic!("moving the leader to {to:x}: {e}"));
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => panic!("bad base64 {s:?}"),
        }
    };
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes().filter(|c| *c != b'=') {
        acc = (acc << 6) | val(c);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// (name, mod revision, op) of an etcd JSON key-value under the test prefix.
fn stored(kv: &Json) -> (String, i64, Option<u64>) {
    let text = |k: &str| String::from_utf8(base64_decode(kv.get(k)?.as_str()?)).ok();
    let key = text("key").expect("key");
    let name = key
        .strip_prefix(KEY_PREFIX)
        .unwrap_or_else(|| panic!("key {key} outside {KEY_PREFIX}"))
        .to_string();
    let rev = kv.get("mod_revision").and_then(Json::as_i64).expect("rev");
    let op = text("value")
        .and_then(|v| Json::parse(&v).ok())
        .and_then(|v| v.path(&["data", "op"])?.as_str()?.parse().ok());
    (name, rev, op)
}

/// What the writer thread did.
struct Written {
    /// Every acknowledged write, as the watch must report it.
    acked: Vec<Change>,
    /// Writes answered with an error or not at all (they may or may not have happened).
    ambiguous: Vec<String>,
    /// The longest any write took to be answered, and which it was.
    slowest: (Duration, u64),
}

/// Creates, updates and deletes configmaps until `PHASE` writes after `stop` is set,
/// resynchronising its idea of what exists after every write without a clear answer.
fn write(api: Api, progress: Arc<AtomicUsize>, stop: Arc<AtomicBool>) -> Written {
    let mut rng: u64 = 0x5eed_1234;
    let mut next = || {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        rng >> 33
    };
    let coll = format!("/api/v1/namespaces/{NS}/configmaps");
    let mut exists = [false; NAMES as usize];
    let mut out = Written {
        acked: Vec::new(),
        ambiguous: Vec::new(),
        slowest: (Duration::ZERO, 0),
    };
    let (mut op, mut after) = (0u64, 0);
    let started = Instant::now();
    while after < PHASE {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "the writer is still going after 90 s (op {op})"
        );
        if stop.load(Ordering::SeqCst) {
            after += 1;
        }
        op += 1;
        let n = next() % NAMES;
        let name = format!("cm-{n}");
        let item = format!("{coll}/{name}");
        let body = format!(
            r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name}"}},"data":{{"op":"{op}"}}}}"#
        );
        let (method, path, ty, data) = if !exists[n as usize] {
            ("POST", coll.as_str(), "ADDED", Some(body.as_str()))
        } else if next() % 3 == 0 {
            ("DELETE", item.as_str(), "DELETED", None)
        } else {
            ("PUT", item.as_str(), "MODIFIED", Some(body.as_str()))
        };
        let t = Instant::now();
        let reply = api.call(method, path, data);
        out.slowest = out.slowest.max((t.elapsed(), op));
        match reply {
            Ok((200 | 201, obj)) => {
                let change = object_change(ty, &obj)
                    .unwrap_or_else(|e| panic!("{method} {path} answered {obj:?}: {e}"));
                out.acked.push(change);
                exists[n as usize] = ty != "DELETED";
            }
            other => {
                let took = t.elapsed();
                out.ambiguous.push(format!(
                    "op {op}: {method} {name} after {took:?}: {other:?}"
                ));
                // Learn whether the object exists now (reads are linearizable).
                exists[n as usize] = wait_for(
                    Duration::from_secs(30),
                    Duration::from_millis(200),
                    || match api.call("GET", &item, None)? {
                        (200, _) => Ok(true),
                        (404, _) => Ok(false),
                        (code, body) => Err(format!("{code}: {body:?}")),
                    },
                )
                .unwrap_or_else(|e| panic!("GET {item}: {e}"));
            }
        }
        progress.store(op as usize, Ordering::SeqCst);
    }
    out
}

#[test]
fn watchers_see_every_event_once_in_order_across_leader_changes() {
    let test = "watchers_see_every_event_once_in_order_across_leader_changes";
    if !require_tool(test, "curl") || !require_tool(test, "etcdctl") {
        return;
    }
    let t0 = Instant::now();
    let init = Init::start("watch-failover");
    let api = Api {
        base: format!("https://{}", init.api),
        pki: init.dir.path().join("data/pki"),
    };

    // Grow the store to three voting members; each must be up before the next is added.
    let mut members: Vec<StoreMember> = Vec::new();
    for name in ["m2", "m3"] {
        let m = init.add_store_member(name);
        let client = m.client.clone();
        members.push(m);
        let mut eps = vec![init.store.as_str()];
        eps.extend(members.iter().map(|m| m.client.as_str()));
        let ok = wait_until(Duration::from_secs(30), Duration::from_millis(100), || {
            status(&client).is_ok_and(|(_, l)| l != 0)
        });
        assert!(
            ok,
            "store member {name} did not join:\n{}",
            members.last().unwrap().log()
        );
        wait_leader(&eps, |_| true);
    }
    let eps = [
        init.store.clone(),
        members[0].client.clone(),
        members[1].client.clone(),
    ];
    let all: Vec<&str> = eps.iter().map(String::as_str).collect();
    let ids: Vec<u64> = all.iter().map(|e| status(e).expect("status").0).collect();
    let leader = wait_leader(&all, |_| true);
    eprintln!(
        "[{:?}] store members {ids:x?} up, leader {leader:x}",
        t0.elapsed()
    );

    // A namespace of our own, and the revision the watches start from.
    api.must(
        "POST",
        "/api/v1/namespaces",
        Some(&format!(
            r#"{{"apiVersion":"v1","kind":"Namespace","metadata":{{"name":"{NS}"}}}}"#
        )),
    );
    let list = api.must("GET", &format!("/api/v1/namespaces/{NS}/configmaps"), None);
    let rv0: i64 = list
        .path(&["metadata", "resourceVersion"])
        .and_then(Json::as_str)
        .and_then(|s| s.parse().ok())
        .expect("list resourceVersion");
    let mut watchers: Vec<Watcher> = (0..WATCHERS)
        .map(|i| Watcher {
            lines: api.watch(rv0, init.dir.path().join(format!("watch-{i}.stderr"))),
            changes: Vec::new(),
        })
        .collect();

    let progress = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (api, progress, stop) = (api.clone(), progress.clone(), stop.clone());
        thread::spawn(move || write(api, progress, stop))
    };
    let writes_began = Instant::now();
    let wait_progress = |n: usize| {
        let ok = wait_until(Duration::from_secs(60), Duration::from_millis(20), || {
            progress.load(Ordering::SeqCst) >= n || writer.is_finished()
        });
        assert!(
            ok && !writer.is_finished(),
            "the writer stalled or died before op {n}"
        );
    };

    // Every watcher is streaming before the first leader change.
    wait_progress(PHASE);
    for (i, w) in watchers.iter_mut().enumerate() {
        assert!(
            w.wait_rv(rv0 + 1, Duration::from_secs(30)),
            "watcher {i} saw nothing: {:?}",
            w.lines.seen
        );
    }

    // 1: transfer leadership away from member 1 (which hosts the API server) to member 2.
    let t = Instant::now();
    move_leader(&all, ids[1]);
    eprintln!(
        "[{:?}] leader moved to {:x} in {:?}",
        t0.elapsed(),
        ids[1],
        t.elapsed()
    );

    // 2: kill member 2 while it leads; members 1 and 3 elect a new leader.
    wait_progress(2 * PHASE);
    let t = Instant::now();
    members[0].kill();
    let survivors = [all[0], all[2]];
    let leader = wait_leader(&survivors, |l| l != ids[1]);
    eprintln!(
        "[{:?}] member 2 killed; {leader:x} elected in {:?}",
        t0.elapsed(),
        t.elapsed()
    );

    // 3: restart member 2 and hand it leadership again once it has caught up.
    wait_progress(3 * PHASE);
    let t = Instant::now();
    members[0].start();
    wait_leader(&all, |_| true);
    move_leader(&all, ids[1]);
    eprintln!(
        "[{:?}] member 2 restarted and leads again after {:?}",
        t0.elapsed(),
        t.elapsed()
    );
    stop.store(true, Ordering::SeqCst);
    let written = writer.join().expect("writer panicked");
    let writes_took = writes_began.elapsed();
    let last = written.acked.last().expect("acknowledged writes").rv;
    eprintln!(
        "[{:?}] {} writes acknowledged, {} ambiguous, in {writes_took:?}; last revision \
         {last}; slowest write {:?} (op {})",
        t0.elapsed(),
        written.acked.len(),
        written.ambiguous.len(),
        written.slowest.0,
        written.slowest.1
    );
    for a in &written.ambiguous {
        eprintln!("  ambiguous: {a}");
    }
    // A new leader takes over within two seconds, so no write should wait out the store's
    // five-second request timeout (as reads pending on a dead leader once did).
    assert!(
        written.slowest.0 < Duration::from_millis(4500),
        "write op {} took {:?}",
        written.slowest.1,
        written.slowest.0
    );

    // Every watcher reaches the last acknowledged write.
    let t = Instant::now();
    for (i, w) in watchers.iter_mut().enumerate() {
        let stderr = init.dir.path().join(format!("watch-{i}.stderr"));
        assert!(
            w.wait_rv(last, Duration::from_secs(30)),
            "watcher {i} stopped at revision {} before {last}; curl: {:?}, stderr: {}",
            w.last_rv(),
            w.lines.child().try_wait(),
            std::fs::read_to_string(stderr).unwrap_or_default()
        );
    }
    eprintln!(
        "[{:?}] watchers caught up in {:?}",
        t0.elapsed(),
        t.elapsed()
    );

    // The store's own history of the prefix, from member 3's etcd watch.
    let mut history = LineReader::spawn(
        Command::new("etcdctl").env("ETCDCTL_API", "3").args([
            &format!("--endpoints={}", all[2]),
            "watch",
            "--prefix",
            KEY_PREFIX,
            &format!("--rev={}", rv0 + 1),
            "-w",
            "json",
        ]),
        Some(init.dir.path().join("etcd-watch.stderr")),
    );
    let mut store_changes: Vec<Change> = Vec::new();
    let mut ops: BTreeMap<String, u64> = BTreeMap::new();
    while store_changes.last().map_or(0, |c| c.rv) < last {
        let line = history
            .next_line(Duration::from_secs(30))
            .unwrap_or_else(|| panic!("etcd watch ended before {last}: {:?}", history.seen));
        let json = Json::parse(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        for ev in json.get("Events").and_then(Json::as_array).unwrap_or(&[]) {
            let kv = ev.get("kv").expect("kv");
            let (name, rv, op) = stored(kv);
            if name == ROOT_CA {
                continue;
            }
            let deleted = ev.get("type").and_then(Json::as_u64) == Some(1);
            let (ty, op) = match (deleted, ops.get(&name)) {
                (true, Some(&prev)) => ("DELETED", prev),
                (false, Some(_)) => ("MODIFIED", op.expect("op")),
                (false, None) => ("ADDED", op.expect("op")),
                (true, None) => panic!("{name} deleted at {rv} but never created"),
            };
            if deleted {
                ops.remove(&name);
            } else {
                ops.insert(name.clone(), op);
            }
            store_changes.push(Change { ty, name, rv, op });
        }
    }
    drop(history);

    // The store's state at the last acknowledged revision, from member 1.
    let out = run_with_timeout(
        Command::new("etcdctl").env("ETCDCTL_API", "3").args([
            &format!("--endpoints={}", all[0]),
            "get",
            "--prefix",
            KEY_PREFIX,
            &format!("--rev={last}"),
            "-w",
            "json",
        ]),
        None,
        Duration::from_secs(20),
    );
    let snapshot = Json::parse(check_ok("etcdctl get", &out).trim()).expect("get json");
    let state: BTreeMap<String, (i64, u64)> = snapshot
        .get("kvs")
        .and_then(Json::as_array)
        .unwrap_or(&[])
        .iter()
        .map(stored)
        .filter(|(name, _, _)| name != ROOT_CA)
        .map(|(name, rv, op)| (name, (rv, op.expect("op"))))
        .collect();

    for (i, w) in watchers.iter().enumerate() {
        let seen: Vec<&Change> = w.changes.iter().filter(|c| c.rv <= last).collect();
        // In order, and nothing twice.
        for pair in seen.windows(2) {
            assert!(
                pair[0].rv < pair[1].rv,
                "watcher {i}: {:?} then {:?}",
                pair[0],
                pair[1]
            );
        }
        // Every acknowledged write, as it was acknowledged.
        for a in &written.acked {
            assert!(
                seen.contains(&a),
                "watcher {i} lacks acknowledged write {a:?}"
            );
        }
        // Exactly the store's history.
        let theirs: Vec<Change> = seen.iter().map(|c| (*c).clone()).collect();
        if theirs != store_changes {
            let at = theirs
                .iter()
                .zip(&store_changes)
                .position(|(a, b)| a != b)
                .unwrap_or(theirs.len().min(store_changes.len()));
            panic!(
                "watcher {i} differs from the store's history at event {at}: {:?} vs {:?} \
                 ({} vs {} events)",
                theirs.get(at),
                store_changes.get(at),
                theirs.len(),
                store_changes.len()
            );
        }
        // And it ends where the store was.
        let mut end: BTreeMap<String, (i64, u64)> = BTreeMap::new();
        for c in &theirs {
            if c.ty == "DELETED" {
                end.remove(&c.name);
            } else {
                end.insert(c.name.clone(), (c.rv, c.op));
            }
        }
        assert_eq!(end, state, "watcher {i}'s final state");
    }
    let first: Vec<&Change> = watchers[0]
        .changes
        .iter()
        .filter(|c| c.rv <= last)
        .collect();
    for (i, w) in watchers.iter().enumerate().skip(1) {
        let seen: Vec<&Change> = w.changes.iter().filter(|c| c.rv <= last).collect();
        assert_eq!(seen, first, "watcher {i} differs from watcher 0");
    }
    eprintln!(
        "[{:?}] {WATCHERS} watchers each saw the same {} events ({} acknowledged writes), \
         equal to the store's history",
        t0.elapsed(),
        first.len(),
        written.acked.len()
    );
}
