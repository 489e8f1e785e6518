//! End-to-end: a 3-member `skiff store` cluster driven by the real `etcdctl`
//! (Debian's etcd-client, v3.4). Every expected output below is what etcdctl
//! 3.4.23 prints against etcd 3.4.23 itself; the tests pass against real etcd
//! too (SKIFF_TEST_REFERENCE_ETCD=/usr/bin/etcd cargo test --test store_etcdctl).

mod common;

use common::cluster::*;
use std::collections::{BTreeSet, HashSet};
use std::process::Output;
use std::time::Duration;

const T: Duration = Duration::from_secs(15);

fn cluster(label: &str) -> Option<Cluster> {
    if !require_tool(label, "etcdctl") {
        return None;
    }
    Some(Cluster::start(3, ClusterOptions::default().label(label)))
}

/// Asserts the command succeeded and printed exactly `want` on stdout.
#[track_caller]
fn assert_out(what: &str, out: &Output, want: &str) {
    assert!(
        out.status.success(),
        "`etcdctl {what}` failed:\n{}",
        describe(out)
    );
    let got = stdout_str(out);
    assert_eq!(
        got,
        want,
        "`etcdctl {what}`: unexpected stdout\n{}",
        describe(out)
    );
}

#[track_caller]
fn run_ok(c: &Cluster, args: &[&str], want: &str) {
    let out = c.etcdctl(args);
    assert_out(&args.join(" "), &out, want);
}

fn combined(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn etcdctl_kv_put_get_del() {
    let Some(c) = cluster("etcdctl_kv_put_get_del") else {
        return;
    };

    run_ok(&c, &["put", "foo", "bar"], "OK\n");
    run_ok(&c, &["get", "foo"], "foo\nbar\n");
    run_ok(&c, &["put", "foo2", "baz"], "OK\n");
    // A key outside the prefix must not show up.
    run_ok(&c, &["put", "fop", "nope"], "OK\n");
    run_ok(&c, &["get", "foo", "--prefix"], "foo\nbar\nfoo2\nbaz\n");
    // etcdctl 3.4 still prints an (empty) value line per key with --keys-only.
    run_ok(
        &c,
        &["get", "foo", "--prefix", "--keys-only"],
        "foo\n\nfoo2\n\n",
    );
    // Range [foo, fop): both foo keys, not fop.
    run_ok(&c, &["get", "foo", "fop"], "foo\nbar\nfoo2\nbaz\n");
    run_ok(&c, &["get", "foo", "--prefix", "--limit=1"], "foo\nbar\n");
    run_ok(&c, &["del", "foo"], "1\n");
    run_ok(&c, &["get", "foo"], "");
    run_ok(&c, &["del", "foo"], "0\n");
    run_ok(&c, &["get", "foo", "--prefix"], "foo2\nbaz\n");
    run_ok(&c, &["del", "f", "--prefix"], "2\n");
    run_ok(&c, &["get", "f", "--prefix"], "");

    // Every member serves the data (linearizable reads through each one).
    run_ok(&c, &["put", "everywhere", "yes"], "OK\n");
    for i in 0..c.len() {
        let out = c.etcdctl_at(i, &["get", "everywhere"]);
        assert_out(
            &format!("get everywhere (member {i})"),
            &out,
            "everywhere\nyes\n",
        );
    }

    // JSON output: the value is base64, revisions are numbers.
    let out = c.etcdctl(&["get", "everywhere", "-w", "json"]);
    let text = check_ok("get -w json", &out);
    let json = Json::parse(text.trim()).unwrap_or_else(|e| panic!("{e}\n{}", describe(&out)));
    let kv = json
        .get("kvs")
        .and_then(Json::as_array)
        .and_then(|a| a.first())
        .unwrap_or_else(|| panic!("no kvs:\n{}", describe(&out)));
    assert_eq!(
        kv.get("key").and_then(Json::as_str),
        Some("ZXZlcnl3aGVyZQ=="),
        "{}",
        describe(&out)
    ); // "everywhere"
    assert_eq!(
        kv.get("value").and_then(Json::as_str),
        Some("eWVz"),
        "{}",
        describe(&out)
    ); // "yes"
    assert!(
        json.path(&["header", "revision"])
            .and_then(Json::as_i64)
            .unwrap_or(0)
            > 0,
        "{}",
        describe(&out)
    );
}

#[test]
fn etcdctl_txn() {
    let Some(c) = cluster("etcdctl_txn") else {
        return;
    };

    run_ok(&c, &["put", "k", "v"], "OK\n");
    // Non-interactive txn reads stdin: compares, blank line, success ops,
    // blank line, failure ops, blank line (etcdctl 3.4 needs the last blank
    // line: without it, it fails with "Error: EOF").
    let out = c.etcdctl_stdin(
        &["txn"],
        "value(\"k\") = \"v\"\n\nput r ok\n\nput r fail\n\n",
    );
    assert_out("txn (compare true)", &out, "SUCCESS\n\nOK\n");
    run_ok(&c, &["get", "r"], "r\nok\n");

    let out = c.etcdctl_stdin(
        &["txn"],
        "value(\"k\") = \"other\"\n\nput r ok\n\nput r fail\n\n",
    );
    assert_out("txn (compare false)", &out, "FAILURE\n\nOK\n");
    run_ok(&c, &["get", "r"], "r\nfail\n");

    // Several ops per branch, a get inside the txn, and other compare kinds.
    let out = c.etcdctl_stdin(
        &["txn"],
        "value(\"k\") = \"v\"\nversion(\"k\") = \"1\"\ncreate(\"nothere\") = \"0\"\n\nput a 1\nget k\n\nput b 2\n\n",
    );
    assert_out("txn (multi)", &out, "SUCCESS\n\nOK\n\nk\nv\n");
    run_ok(&c, &["get", "a"], "a\n1\n");
    run_ok(&c, &["get", "b"], "");

    // mod revision compare that fails, then a delete in the failure branch.
    let out = c.etcdctl_stdin(&["txn"], "mod(\"k\") = \"1\"\n\nput b 3\n\ndel a\n\n");
    assert_out("txn (mod compare false)", &out, "FAILURE\n\n1\n");
    run_ok(&c, &["get", "a"], "");
}

/// Reads the next watch event (3 lines: type, key, value) from `w`.
fn next_event(w: &mut LineReader, timeout: Duration) -> Option<(String, String, String)> {
    let t = w.next_line(timeout)?;
    let k = w.next_line(timeout)?;
    let v = w.next_line(timeout)?;
    Some((t, k, v))
}

#[test]
fn etcdctl_watch() {
    let Some(c) = cluster("etcdctl_watch") else {
        return;
    };

    // Live watch. etcdctl prints nothing when the watch is registered, so
    // put probe values until one comes through; after that every put must.
    let mut w = c.etcdctl_spawn(&["watch", "k"]);
    let mut n = 0;
    let live = wait_until(T, Duration::from_millis(0), || {
        n += 1;
        run_ok(&c, &["put", "k", &format!("probe-{n}")], "OK\n");
        match next_event(&mut w, Duration::from_millis(500)) {
            Some((t, k, v)) => {
                assert_eq!(
                    (t.as_str(), k.as_str()),
                    ("PUT", "k"),
                    "watch output: {:?}",
                    w.seen
                );
                assert!(v.starts_with("probe-"), "watch output: {:?}", w.seen);
                true
            }
            None => false,
        }
    });
    assert!(
        live,
        "`etcdctl watch k` printed nothing within {T:?}; lines: {:?}",
        w.seen
    );
    run_ok(&c, &["put", "other", "x"], "OK\n");
    run_ok(&c, &["put", "k", "v1"], "OK\n");
    run_ok(&c, &["del", "k"], "1\n");
    // Skip late probe events, then exactly v1 and the delete.
    let ev = loop {
        let ev =
            next_event(&mut w, T).unwrap_or_else(|| panic!("watch: no event; lines: {:?}", w.seen));
        if !ev.2.starts_with("probe-") {
            break ev;
        }
    };
    assert_eq!(
        ev,
        ("PUT".into(), "k".into(), "v1".into()),
        "watch lines: {:?}",
        w.seen
    );
    // A DELETE event prints an empty value line.
    w.expect_lines(&["DELETE", "k", ""], T);
    w.kill();

    // History replay from revision 1.
    run_ok(&c, &["put", "h", "a"], "OK\n");
    run_ok(&c, &["put", "h", "b"], "OK\n");
    run_ok(&c, &["del", "h"], "1\n");
    let mut w = c.etcdctl_spawn(&["watch", "--rev=1", "h"]);
    w.expect_lines(&["PUT", "h", "a", "PUT", "h", "b", "DELETE", "h", ""], T);
    run_ok(&c, &["put", "h", "c"], "OK\n");
    w.expect_lines(&["PUT", "h", "c"], T);
    w.kill();

    // Prefix watch, started at a known revision so no event can be missed.
    let out = c.etcdctl(&["get", "p/", "--prefix", "-w", "json"]);
    let text = check_ok("get -w json", &out);
    let rev = Json::parse(text.trim())
        .ok()
        .and_then(|j| j.path(&["header", "revision"]).and_then(Json::as_i64))
        .unwrap_or_else(|| panic!("no header.revision:\n{}", describe(&out)));
    let mut w = c.etcdctl_spawn(&["watch", "--prefix", &format!("--rev={}", rev + 1), "p/"]);
    run_ok(&c, &["put", "p/1", "x"], "OK\n");
    run_ok(&c, &["put", "q/1", "not-watched"], "OK\n");
    run_ok(&c, &["put", "p/2", "y"], "OK\n");
    run_ok(&c, &["del", "p/", "--prefix"], "2\n");
    w.expect_lines(
        &[
            "PUT", "p/1", "x", "PUT", "p/2", "y", "DELETE", "p/1", "", "DELETE", "p/2", "",
        ],
        T,
    );
    w.kill();
}

#[test]
fn etcdctl_lease() {
    let Some(c) = cluster("etcdctl_lease") else {
        return;
    };

    let out = c.etcdctl(&["lease", "grant", "60"]);
    let text = check_ok("lease grant 60", &out);
    // "lease 694d77aa9e3ac85b granted with TTL(60s)\n"
    let id = text
        .strip_prefix("lease ")
        .and_then(|r| r.strip_suffix(" granted with TTL(60s)\n"))
        .filter(|id| !id.is_empty() && id.chars().all(|ch| ch.is_ascii_hexdigit()))
        .unwrap_or_else(|| panic!("unexpected `lease grant 60` output:\n{}", describe(&out)))
        .to_string();

    run_ok(&c, &["put", &format!("--lease={id}"), "lk", "lv"], "OK\n");
    run_ok(&c, &["get", "lk"], "lk\nlv\n");

    let out = c.etcdctl(&["lease", "timetolive", &id, "--keys"]);
    let text = check_ok("lease timetolive --keys", &out);
    // "lease ID granted with TTL(60s), remaining(59s), attached keys([lk])\n"
    let rest = text
        .strip_prefix(&format!("lease {id} granted with TTL(60s), remaining("))
        .and_then(|r| r.strip_suffix("s), attached keys([lk])\n"))
        .unwrap_or_else(|| {
            panic!(
                "unexpected `lease timetolive --keys` output:\n{}",
                describe(&out)
            )
        });
    let remaining: i64 = rest
        .parse()
        .unwrap_or_else(|_| panic!("remaining not a number:\n{}", describe(&out)));
    assert!(
        (1..=60).contains(&remaining),
        "remaining {remaining}:\n{}",
        describe(&out)
    );

    run_ok(
        &c,
        &["lease", "revoke", &id],
        &format!("lease {id} revoked\n"),
    );
    run_ok(&c, &["get", "lk"], "");
}

/// Parses `etcdctl member list` simple output into (id, status, name, peer, client, learner).
fn member_lines(out: &Output) -> Vec<Vec<String>> {
    stdout_str(out)
        .lines()
        .map(|l| l.split(", ").map(str::to_string).collect())
        .collect()
}

#[test]
fn etcdctl_cluster_info() {
    let Some(mut c) = cluster("etcdctl_cluster_info") else {
        return;
    };

    // member list: "<hexid>, started, <name>, <peer-url>, <client-url>, false"
    let out = c.etcdctl(&["member", "list"]);
    check_ok("member list", &out);
    let lines = member_lines(&out);
    assert_eq!(lines.len(), 3, "member list:\n{}", describe(&out));
    let mut ids = HashSet::new();
    let mut seen = BTreeSet::new();
    for f in &lines {
        assert_eq!(f.len(), 6, "member list line {f:?}:\n{}", describe(&out));
        let id = u64::from_str_radix(&f[0], 16)
            .unwrap_or_else(|_| panic!("bad id {f:?}:\n{}", describe(&out)));
        assert!(
            id != 0 && ids.insert(id),
            "ids must be non-zero and distinct:\n{}",
            describe(&out)
        );
        assert_eq!(
            f[0],
            format!("{id:x}"),
            "id must be lower-case hex without padding:\n{}",
            describe(&out)
        );
        assert_eq!(f[1], "started", "{}", describe(&out));
        assert_eq!(f[5], "false", "{}", describe(&out));
        seen.insert((f[2].clone(), f[3].clone(), f[4].clone()));
    }
    let want: BTreeSet<_> = c
        .members()
        .iter()
        .map(|m| (m.name.clone(), m.peer_url.clone(), m.client_url.clone()))
        .collect();
    assert_eq!(seen, want, "member list:\n{}", describe(&out));

    // member list -w json: same ids, as numbers.
    let out = c.etcdctl(&["member", "list", "-w", "json"]);
    let text = check_ok("member list -w json", &out);
    let json = Json::parse(text.trim()).unwrap_or_else(|e| panic!("{e}\n{}", describe(&out)));
    let json_ids: HashSet<u64> = json
        .get("members")
        .and_then(Json::as_array)
        .unwrap_or_else(|| panic!("no members:\n{}", describe(&out)))
        .iter()
        .filter_map(|m| m.get("ID").and_then(Json::as_u64))
        .collect();
    assert_eq!(json_ids, ids, "member list -w json:\n{}", describe(&out));

    // endpoint status (simple): "endpoint, id, version, db size, is leader,
    // is learner, raft term, raft index, raft applied index, errors"
    let out = c.etcdctl(&["endpoint", "status"]);
    check_ok("endpoint status", &out);
    let lines = member_lines(&out);
    assert_eq!(lines.len(), 3, "endpoint status:\n{}", describe(&out));
    let mut leaders = 0;
    let mut eps = BTreeSet::new();
    for f in &lines {
        assert!(
            f.len() >= 9,
            "endpoint status line {f:?}:\n{}",
            describe(&out)
        );
        eps.insert(f[0].clone());
        let id = u64::from_str_radix(&f[1], 16).unwrap_or(0);
        assert!(
            ids.contains(&id),
            "endpoint status id {} not in member list:\n{}",
            f[1],
            describe(&out)
        );
        match f[4].as_str() {
            "true" => leaders += 1,
            "false" => {}
            other => panic!("is-leader field {other:?}:\n{}", describe(&out)),
        }
        assert_eq!(f[5], "false", "is-learner:\n{}", describe(&out));
    }
    assert_eq!(
        leaders,
        1,
        "exactly one member must report itself leader:\n{}",
        describe(&out)
    );
    let want_eps: BTreeSet<String> = c
        .members()
        .iter()
        .map(|m| m.client_url.replace("http://", ""))
        .collect();
    assert_eq!(eps, want_eps, "endpoint status:\n{}", describe(&out));

    // endpoint status -w json, all endpoints at once.
    let out = c.etcdctl(&["endpoint", "status", "-w", "json"]);
    let text = check_ok("endpoint status -w json", &out);
    let json = Json::parse(text.trim()).unwrap_or_else(|e| panic!("{e}\n{}", describe(&out)));
    let arr = json
        .as_array()
        .unwrap_or_else(|| panic!("not an array:\n{}", describe(&out)));
    assert_eq!(arr.len(), 3, "{}", describe(&out));
    let mut leader_ids = HashSet::new();
    let mut self_leaders = 0;
    for e in arr {
        let mid = e
            .path(&["Status", "header", "member_id"])
            .and_then(Json::as_u64)
            .unwrap_or(0);
        let leader = e
            .path(&["Status", "leader"])
            .and_then(Json::as_u64)
            .unwrap_or(0);
        assert!(
            ids.contains(&mid),
            "member_id {mid} not in member list:\n{}",
            describe(&out)
        );
        assert!(leader != 0, "no leader:\n{}", describe(&out));
        leader_ids.insert(leader);
        if leader == mid {
            self_leaders += 1;
        }
        assert!(
            e.path(&["Status", "raftTerm"])
                .and_then(Json::as_u64)
                .unwrap_or(0)
                > 0,
            "raftTerm:\n{}",
            describe(&out)
        );
        assert!(
            e.path(&["Status", "raftIndex"])
                .and_then(Json::as_u64)
                .unwrap_or(0)
                > 0,
            "raftIndex:\n{}",
            describe(&out)
        );
    }
    assert_eq!(
        leader_ids.len(),
        1,
        "members disagree on the leader:\n{}",
        describe(&out)
    );
    assert_eq!(
        self_leaders,
        1,
        "exactly one member must be the leader:\n{}",
        describe(&out)
    );
    // The harness' own view agrees.
    let leader = c.wait_leader(T);
    assert!(
        leader_ids.contains(&c.member_id(leader)),
        "harness leader {leader}:\n{}",
        describe(&out)
    );

    // endpoint health: etcdctl 3.4 prints this on stderr.
    let out = c.etcdctl(&["endpoint", "health"]);
    assert!(out.status.success(), "endpoint health:\n{}", describe(&out));
    let all = combined(&out);
    for m in c.members() {
        let want = format!(
            "{} is healthy: successfully committed proposal: took = ",
            m.client_url.replace("http://", "")
        );
        assert!(
            all.lines().any(|l| l.starts_with(&want)),
            "missing {want:?}:\n{}",
            describe(&out)
        );
    }

    // snapshot save: one endpoint only (etcdctl refuses several).
    let file = c.root().join("backup.db");
    let file_s = file.to_string_lossy().into_owned();
    let out = c.etcdctl_at(leader, &["snapshot", "save", &file_s]);
    let text = check_ok("snapshot save", &out);
    assert!(
        text.contains(&format!("Snapshot saved at {file_s}")),
        "snapshot save:\n{}",
        describe(&out)
    );
    let len = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
    assert!(
        len > 0,
        "snapshot file {file_s} is empty or missing:\n{}",
        describe(&out)
    );
}
