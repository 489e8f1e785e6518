//! Bad input at every kind of endpoint: malformed JSON, YAML and protobuf, wrong types, deep
//! nesting, huge bodies, invalid names, bad selectors and continue tokens. The server must
//! answer each with a 4xx, stay up, and store nothing.

mod common;

use common::cluster::*;
use common::control_plane::Init;
use std::process::Command;
use std::time::Duration;

/// A small deterministic generator, so a failure replays exactly.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Every key under /registry, as etcdctl lists them.
fn registry_keys(init: &Init) -> Vec<String> {
    let out = run_with_timeout(
        Command::new("etcdctl").env("ETCDCTL_API", "3").args([
            "--endpoints",
            &init.store,
            "get",
            "/registry",
            "--prefix",
            "--keys-only",
        ]),
        None,
        Duration::from_secs(15),
    );
    check_ok("etcdctl get", &out)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn malformed_requests_get_4xx_and_store_nothing() {
    let name = "malformed_requests_get_4xx";
    if !require_tool(name, "curl") || !require_tool(name, "etcdctl") {
        return;
    }
    let init = Init::start(name);
    // A clean baseline: wait for the server's own start-up objects.
    assert!(wait_until(
        Duration::from_secs(20),
        Duration::from_millis(100),
        || {
            registry_keys(&init)
                .iter()
                .any(|k| k.contains("clusterrolebindings/system:basic-user"))
        }
    ));
    let before = registry_keys(&init);
    let call = |method: &str, path: &str, content_type: &str, body: &[u8]| -> u16 {
        init.request(method, path, content_type, body).0
    };

    let collections = [
        "/api/v1/namespaces",
        "/api/v1/nodes",
        "/api/v1/namespaces/default/pods",
        "/api/v1/namespaces/default/services",
        "/api/v1/namespaces/default/configmaps",
        "/api/v1/namespaces/default/secrets",
        "/apis/apps/v1/namespaces/default/deployments",
        "/apis/batch/v1/namespaces/default/cronjobs",
        "/apis/rbac.authorization.k8s.io/v1/clusterroles",
        "/apis/networking.k8s.io/v1/namespaces/default/networkpolicies",
    ];
    let mut rng = Lcg(0x5eed);
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let mut bodies: Vec<(&str, Vec<u8>)> = vec![
        ("application/json", b"{".to_vec()),
        ("application/json", b"[1,2".to_vec()),
        ("application/json", b"null".to_vec()),
        ("application/json", b"\"just a string\"".to_vec()),
        ("application/json", br#"{"metadata": 5}"#.to_vec()),
        ("application/json", br#"{"metadata": {"name": 7}}"#.to_vec()),
        // Names invalid for every kind (RBAC names are path segments: "/" and "%" are out).
        (
            "application/json",
            br#"{"metadata": {"name": "Bad/Name"}}"#.to_vec(),
        ),
        (
            "application/json",
            format!(r#"{{"metadata": {{"name": "{}%"}}}}"#, "a".repeat(300)).into_bytes(),
        ),
        (
            "application/json",
            br#"{"metadata": {"name": "../etc"}}"#.to_vec(),
        ),
        (
            "application/json",
            br#"{"metadata": {"name": ""}}"#.to_vec(),
        ),
        (
            "application/json",
            br#"{"apiVersion": "v9", "kind": "Nope", "metadata": {"name": "x"}}"#.to_vec(),
        ),
        (
            "application/json",
            br#"{"metadata": {"name": "x", "labels": {"bad key!": "v"}}, "spec": "nope"}"#.to_vec(),
        ),
        ("application/json", deep.clone().into_bytes()),
        ("application/json", vec![b' '; 4 * 1024 * 1024]),
        ("application/yaml", b"a: [b\n  - : :".to_vec()),
        (
            "application/vnd.kubernetes.protobuf",
            b"k8s\0\x0a\xff\xff\xff\xff\x0f".to_vec(),
        ),
        ("application/vnd.kubernetes.protobuf", b"no magic".to_vec()),
        ("text/plain", b"hello".to_vec()),
    ];
    for _ in 0..6 {
        let n = 1 + (rng.next() % 512) as usize;
        bodies.push(("application/json", rng.bytes(n)));
        bodies.push((
            "application/vnd.kubernetes.protobuf",
            [b"k8s\0".to_vec(), rng.bytes(n)].concat(),
        ));
    }

    let mut failures = Vec::new();
    let mut check = |what: String, code: u16| {
        if !(400..500).contains(&code) {
            failures.push(format!("{what} -> {code}"));
        }
    };
    for path in collections {
        for (ct, body) in &bodies {
            check(
                format!("POST {path} ({ct}, {} bytes)", body.len()),
                call("POST", path, ct, body),
            );
        }
        let object = format!("{path}/fuzz-target");
        for (ct, body) in bodies.iter().take(6) {
            check(
                format!("PUT {object} ({ct})"),
                call("PUT", &object, ct, body),
            );
        }
        for ct in [
            "application/merge-patch+json",
            "application/json-patch+json",
            "application/strategic-merge-patch+json",
            "application/apply-patch+yaml",
        ] {
            check(
                format!("PATCH {object} ({ct})"),
                call("PATCH", &object, ct, b"{"),
            );
        }
        for query in [
            "labelSelector=a%20in%20(",
            "labelSelector=%21%21",
            "labelSelector=a%3D%3D%3Db",
            "fieldSelector=nope%3Dx",
            "fieldSelector=metadata.name",
            "continue=not-a-token",
            "continue=eyJydiI6LTF9",
            "watch=true&resourceVersion=abc",
        ] {
            check(
                format!("GET {path}?{query}"),
                call("GET", &format!("{path}?{query}"), "application/json", b""),
            );
        }
        check(
            format!("DELETE {path} with a bad body"),
            call(
                "DELETE",
                &format!("{path}/fuzz-target"),
                "application/json",
                b"{\"propagationPolicy\":",
            ),
        );
    }
    // The streaming subresources: bad queries, missing pods, and requests without the upgrade
    // they need.
    for path in [
        "/api/v1/namespaces/default/pods/nope/exec?command=ls&stdout=true",
        "/api/v1/namespaces/default/pods/nope/portforward?ports=80",
        "/api/v1/namespaces/default/pods/nope/log?tailLines=x",
        "/api/v1/namespaces/default/pods/nope/exec?command=%ZZ",
        "/api/v1/namespaces/default/pods/nope/portforward?ports=99999",
    ] {
        for method in ["GET", "POST"] {
            check(
                format!("{method} {path}"),
                call(method, path, "application/json", b"{"),
            );
        }
    }
    assert!(
        failures.is_empty(),
        "not answered with 4xx:\n{}",
        failures.join("\n")
    );

    // Still up, and nothing was stored.
    assert_eq!(call("GET", "/healthz", "application/json", b""), 200);
    assert_eq!(
        registry_keys(&init),
        before,
        "bad requests changed the store"
    );
}
