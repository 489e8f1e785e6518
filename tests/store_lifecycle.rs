//! End-to-end: store behaviour over time — lease expiry, history and compaction, watch progress
//! notifications, and backups (snapshot save, then restore into a new cluster).

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::cluster::*;
use skiff_proto::etcdserverpb::watch_client::WatchClient;
use skiff_proto::etcdserverpb::{
    watch_request::RequestUnion, WatchCreateRequest, WatchProgressRequest, WatchRequest,
};

const T: Duration = Duration::from_secs(15);

fn single(label: &str) -> Option<Cluster> {
    if !require_tool(label, "etcdctl") {
        return None;
    }
    Some(Cluster::start(1, ClusterOptions::default().label(label)))
}

#[track_caller]
fn ok(c: &Cluster, args: &[&str]) -> String {
    let out = c.etcdctl(args);
    assert!(
        out.status.success(),
        "etcdctl {args:?}:\n{}",
        describe(&out)
    );
    stdout_str(&out)
}

fn revision(c: &Cluster) -> i64 {
    let out = ok(c, &["get", "nothing-here", "-w", "json"]);
    Json::parse(&out)
        .ok()
        .and_then(|j| j.path(&["header", "revision"]).and_then(|r| r.as_i64()))
        .unwrap_or_else(|| panic!("no header.revision in {out}"))
}

#[test]
fn lease_expiry_deletes_attached_keys() {
    let Some(c) = single("lease_expiry_deletes_attached_keys") else {
        return;
    };
    let out = ok(&c, &["lease", "grant", "2"]);
    let id = out.split_whitespace().nth(1).expect("lease id").to_string();
    assert_eq!(ok(&c, &["put", "--lease", &id, "ephemeral", "v"]), "OK\n");
    assert_eq!(ok(&c, &["get", "ephemeral"]), "ephemeral\nv\n");
    let gone = wait_until(T, Duration::from_millis(100), || {
        ok(&c, &["get", "ephemeral"]).is_empty()
    });
    assert!(
        gone,
        "key attached to an expired 2 s lease still present after {T:?}"
    );
    let ttl = ok(&c, &["lease", "timetolive", &id]);
    assert!(
        ttl.contains("already expired"),
        "timetolive after expiry: {ttl}"
    );
}

#[test]
fn history_reads_and_compaction() {
    let Some(c) = single("history_reads_and_compaction") else {
        return;
    };
    ok(&c, &["put", "k", "v1"]);
    let r1 = revision(&c);
    ok(&c, &["put", "k", "v2"]);
    ok(&c, &["put", "k", "v3"]);
    assert_eq!(ok(&c, &["get", "k", &format!("--rev={r1}")]), "k\nv1\n");
    assert_eq!(ok(&c, &["get", "k"]), "k\nv3\n");
    let r3 = revision(&c);
    assert_eq!(
        ok(&c, &["compact", &r3.to_string()]),
        format!("compacted revision {r3}\n")
    );
    let out = c.etcdctl(&["get", "k", &format!("--rev={r1}")]);
    assert!(
        !out.status.success(),
        "read below compaction must fail:\n{}",
        describe(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("required revision has been compacted"),
        "{}",
        describe(&out)
    );
    // A watch from before the compaction point is cancelled with the compaction revision.
    // etcdctl reports the cancellation on stderr and exits.
    let out = c.etcdctl(&["watch", "k", &format!("--rev={r1}")]);
    let all = format!(
        "{}{}",
        stdout_str(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        all.contains("watch was canceled (etcdserver: mvcc: required revision has been compacted)"),
        "watch below compaction:\n{}",
        describe(&out)
    );
    // Reads at and after the compaction point still work.
    assert_eq!(ok(&c, &["get", "k", &format!("--rev={r3}")]), "k\nv3\n");
}

#[test]
fn watch_progress_notification_carries_revision() {
    let Some(c) = single("watch_progress_notification_carries_revision") else {
        return;
    };
    ok(&c, &["put", "p", "1"]);
    let rev = revision(&c);
    let url = c.member(0).client_url.clone();
    let rt = tokio::runtime::Runtime::new().expect("tokio");
    rt.block_on(async move {
        let mut client = WatchClient::connect(url).await.expect("connect");
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let mut stream = client
            .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .expect("watch")
            .into_inner();
        let create = WatchCreateRequest {
            key: b"p".to_vec(),
            ..Default::default()
        };
        tx.send(WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(create)),
        })
        .await
        .expect("send create");
        let created = tokio::time::timeout(T, stream.message())
            .await
            .expect("created in time");
        assert!(created.expect("ok").expect("message").created);
        tx.send(WatchRequest {
            request_union: Some(RequestUnion::ProgressRequest(WatchProgressRequest {})),
        })
        .await
        .expect("send progress");
        let p = tokio::time::timeout(T, stream.message())
            .await
            .expect("progress in time")
            .expect("ok")
            .expect("message");
        assert_eq!(
            p.watch_id, -1,
            "progress notices are broadcast with watch id -1"
        );
        assert!(p.events.is_empty());
        assert_eq!(p.header.expect("header").revision, rev);
    });
}

/// Kills the child on drop so a failing test leaves no process behind.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn snapshot_save_and_restore_into_new_cluster() {
    let Some(c) = single("snapshot_save_and_restore_into_new_cluster") else {
        return;
    };
    for i in 0..50 {
        ok(
            &c,
            &["put", &format!("/backup/{i:02}"), &format!("value-{i}")],
        );
    }
    let rev = revision(&c);
    let dir = TestDir::new("restore");
    let file = dir.path().join("backup.snap");
    let bin = env!("CARGO_BIN_EXE_skiff");
    let out = Command::new(bin)
        .args(["store", "snapshot", "save"])
        .arg(&file)
        .args(["--endpoints", &c.member(0).client_url])
        .output()
        .expect("run skiff");
    assert!(out.status.success(), "snapshot save:\n{}", describe(&out));
    assert!(
        stdout_str(&out).contains("Snapshot saved at"),
        "{}",
        describe(&out)
    );

    // etcdctl accepts the same stream.
    let etcd_file = dir.path().join("etcdctl.snap");
    let out = c.etcdctl(&["snapshot", "save", etcd_file.to_str().unwrap_or_default()]);
    assert!(
        stdout_str(&out).contains("Snapshot saved at"),
        "{}",
        describe(&out)
    );

    let ip = std::net::Ipv4Addr::new(127, 0, 0, 19);
    let (cport, pport) = (alloc_port(ip), alloc_port(ip));
    let data = dir.path().join("restored");
    let member_flags = |data: &std::path::Path| -> Vec<String> {
        vec![
            "--name".into(),
            "r0".into(),
            "--data-dir".into(),
            data.display().to_string(),
            "--listen-client".into(),
            format!("http://{ip}:{cport}"),
            "--listen-peer".into(),
            format!("http://{ip}:{pport}"),
            "--initial-cluster".into(),
            format!("r0=http://{ip}:{pport}"),
        ]
    };
    let out = Command::new(bin)
        .args(["store", "snapshot", "restore"])
        .arg(&file)
        .args(member_flags(&data))
        .output()
        .expect("run skiff");
    assert!(
        out.status.success(),
        "snapshot restore:\n{}",
        describe(&out)
    );

    // Restoring into a used directory is refused and changes nothing.
    let again = Command::new(bin)
        .args(["store", "snapshot", "restore"])
        .arg(&file)
        .args(member_flags(&data))
        .output()
        .expect("run skiff");
    assert!(
        !again.status.success(),
        "restore over existing data must fail"
    );
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("not empty"),
        "{}",
        describe(&again)
    );

    // A damaged file is refused with a clear message.
    let mut bytes = std::fs::read(&file).expect("read snapshot");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    let damaged = dir.path().join("damaged.snap");
    std::fs::write(&damaged, &bytes).expect("write");
    let out = Command::new(bin)
        .args(["store", "snapshot", "restore"])
        .arg(&damaged)
        .args(member_flags(&dir.path().join("other")))
        .output()
        .expect("run skiff");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("checksum"),
        "{}",
        describe(&out)
    );

    let log = std::fs::File::create(dir.path().join("r0.log")).expect("log");
    let _member = Proc(
        Command::new(bin)
            .arg("store")
            .args(member_flags(&data))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start restored member"),
    );
    let ep = format!("{ip}:{cport}");
    let healthy = wait_until(T, Duration::from_millis(100), || {
        c.etcdctl_with(&ep, &["endpoint", "health"], None)
            .status
            .success()
    });
    assert!(healthy, "restored member never became healthy");
    let out = c.etcdctl_with(&ep, &["get", "/backup/", "--prefix", "--keys-only"], None);
    let keys = stdout_str(&out).lines().filter(|l| !l.is_empty()).count();
    assert_eq!(keys, 50, "{}", describe(&out));
    let got = c.etcdctl_with(&ep, &["get", "/backup/49"], None);
    assert_eq!(stdout_str(&got), "/backup/49\nvalue-49\n");
    let out = c.etcdctl_with(&ep, &["get", "nothing-here", "-w", "json"], None);
    let json = Json::parse(&stdout_str(&out)).unwrap_or_else(|e| panic!("{e}: {}", describe(&out)));
    let restored_rev = json
        .path(&["header", "revision"])
        .and_then(|r| r.as_i64())
        .unwrap_or(0);
    assert!(
        restored_rev >= rev,
        "revision went back: {restored_rev} < {rev}"
    );
    let members = stdout_str(&c.etcdctl_with(&ep, &["member", "list"], None));
    assert!(
        members.contains(", r0, ") && members.lines().count() == 1,
        "member list: {members}"
    );
}
