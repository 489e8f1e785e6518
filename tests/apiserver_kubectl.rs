//! The API server as the real `/usr/bin/kubectl` sees it: `skiff init` starts it with generated
//! certificates and writes an admin kubeconfig, and kubectl uses that unmodified.

mod common;

use common::cluster::*;
use common::control_plane::Init;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

#[test]
fn kubectl_reads_version_discovery_and_health() {
    let name = "kubectl_reads_version_discovery_and_health";
    if !require_tool(name, "kubectl") {
        return;
    }
    let init = Init::start(name);
    let out = check_ok("kubectl version", &init.kubectl(&["version", "-o", "json"]));
    let json = Json::parse(&out).expect("kubectl version -o json");
    assert_eq!(
        json.path(&["serverVersion", "gitVersion"])
            .and_then(Json::as_str),
        Some("v1.33.0"),
        "{out}"
    );
    assert_eq!(
        json.path(&["clientVersion", "minor"])
            .and_then(Json::as_str),
        Some("33"),
        "kubectl must pick its 1.33 client from the server's version: {out}"
    );
    assert_eq!(
        check_ok("healthz", &init.kubectl(&["get", "--raw", "/healthz"])),
        "ok"
    );
    let versions = check_ok("api-versions", &init.kubectl(&["api-versions"]));
    for gv in ["apps/v1", "authentication.k8s.io/v1", "v1"] {
        assert!(versions.lines().any(|l| l == gv), "{gv}: {versions}");
    }
    let missing = init.kubectl(&["get", "--raw", "/nope"]);
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("NotFound"),
        "{}",
        describe(&missing)
    );
}

#[test]
fn anonymous_requests_get_401_and_the_certificate_names_the_address() {
    let name = "anonymous_requests_get_401";
    if !require_tool(name, "curl") {
        return;
    }
    let init = Init::start(name);
    let ca = init.dir.path().join("data/pki/ca.crt");
    assert!(Path::new(&ca).exists());
    // Verifying against the cluster CA by IP proves the serving certificate carries the IP SAN.
    let out = run_with_timeout(
        Command::new("curl")
            .args(["-sS", "--cacert"])
            .arg(&ca)
            .args(["-w", "\n%{http_code}"])
            .arg(format!("https://{}/version", init.api)),
        None,
        Duration::from_secs(15),
    );
    let text = check_ok("curl", &out);
    let (body, code) = text.trim().rsplit_once('\n').expect("body and code");
    assert_eq!(code, "401", "{text}");
    let status = Json::parse(body).expect("a Status body");
    assert_eq!(status.get("kind").and_then(Json::as_str), Some("Status"));
    assert_eq!(status.get("code").and_then(Json::as_u64), Some(401));
}

#[test]
fn kubectl_manages_namespaces_stored_in_the_store() {
    let name = "kubectl_manages_namespaces";
    if !require_tool(name, "kubectl") || !require_tool(name, "etcdctl") {
        return;
    }
    let init = Init::start(name);
    // `kubectl create namespace` sends a protobuf body.
    let out = check_ok("create", &init.kubectl(&["create", "namespace", "demo"]));
    assert_eq!(out.trim(), "namespace/demo created");
    let table = check_ok("get ns", &init.kubectl(&["get", "namespaces"]));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["NAME", "STATUS", "AGE"],
        "{table}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("demo ") && l.contains("Active")),
        "{table}"
    );
    let json = check_ok(
        "get -o json",
        &init.kubectl(&["get", "ns", "demo", "-o", "json"]),
    );
    let obj = Json::parse(&json).expect("namespace JSON");
    assert_eq!(obj.get("kind").and_then(Json::as_str), Some("Namespace"));
    assert_eq!(
        obj.path(&["metadata", "uid"])
            .and_then(Json::as_str)
            .map(str::len),
        Some(36)
    );
    assert!(obj
        .path(&["metadata", "resourceVersion"])
        .and_then(Json::as_str)
        .is_some());
    assert!(obj.path(&["metadata", "creationTimestamp"]).is_some());

    // It lives in the replicated store, where etcd's tools see it.
    let stored = run_with_timeout(
        Command::new("etcdctl").env("ETCDCTL_API", "3").args([
            "--endpoints",
            &init.store,
            "get",
            "/registry/core/namespaces/demo",
            "--print-value-only",
        ]),
        None,
        Duration::from_secs(15),
    );
    assert!(check_ok("etcdctl get", &stored).contains("\"name\":\"demo\""));

    let again = init.kubectl(&["create", "namespace", "demo"]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr)
            .contains("(AlreadyExists): namespaces \"demo\" already exists"),
        "{}",
        describe(&again)
    );
    let bad = init.kubectl(&["create", "namespace", "Bad_Name"]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains(
            "The Namespace \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\""
        ),
        "{}",
        describe(&bad)
    );
    let deleted = check_ok("delete", &init.kubectl(&["delete", "namespace", "demo"]));
    assert_eq!(deleted.trim(), "namespace \"demo\" deleted");
    let gone = init.kubectl(&["get", "namespace", "demo"]);
    assert!(
        String::from_utf8_lossy(&gone.stderr).contains("(NotFound): namespaces \"demo\" not found"),
        "{}",
        describe(&gone)
    );
}

#[test]
fn users_come_from_certificates_and_bearer_tokens() {
    let name = "users_come_from_certificates_and_bearer_tokens";
    if !require_tool(name, "kubectl") {
        return;
    }
    let tokens = TestDir::new("tokens");
    let file = tokens.path().join("tokens.csv");
    std::fs::write(&file, "s3cret-token,alice,1001,\"dev,ops\"\n").expect("token file");
    let init = Init::start_with(name, &["--token-auth-file", file.to_str().unwrap()]);
    let admin = check_ok("whoami", &init.kubectl(&["auth", "whoami"]));
    assert!(admin.contains("kubernetes-admin"), "{admin}");
    assert!(
        admin.contains("[system:masters system:authenticated]"),
        "{admin}"
    );

    let ca = init.dir.path().join("data/pki/ca.crt");
    let as_token = |token: &str| {
        run_with_timeout(
            Command::new("kubectl")
                .env("HOME", init.dir.path().join("home"))
                .args(["--kubeconfig", "/dev/null", "--server"])
                .arg(format!("https://{}", init.api))
                .arg("--certificate-authority")
                .arg(&ca)
                .args(["--token", token, "auth", "whoami"]),
            None,
            Duration::from_secs(30),
        )
    };
    let alice = check_ok("whoami with a token", &as_token("s3cret-token"));
    assert!(alice.contains("alice"), "{alice}");
    assert!(alice.contains("[dev ops system:authenticated]"), "{alice}");
    // RBAC: alice may do nothing until a binding grants it, then only what the role allows.
    let as_alice = |args: &[&str]| {
        run_with_timeout(
            Command::new("kubectl")
                .env("HOME", init.dir.path().join("home-alice"))
                .args(["--kubeconfig", "/dev/null", "--server"])
                .arg(format!("https://{}", init.api))
                .arg("--certificate-authority")
                .arg(&ca)
                .args(["--token", "s3cret-token"])
                .args(args),
            None,
            Duration::from_secs(30),
        )
    };
    let denied = as_alice(&["get", "pods"]);
    assert!(!denied.status.success());
    assert!(
        String::from_utf8_lossy(&denied.stderr).contains(
            "Error from server (Forbidden): pods is forbidden: User \"alice\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""
        ),
        "{}",
        describe(&denied)
    );
    assert_eq!(
        stdout_str(&as_alice(&["auth", "can-i", "list", "pods"])).trim(),
        "no"
    );
    check_ok(
        "create rolebinding",
        &init.kubectl(&[
            "create",
            "rolebinding",
            "alice-view",
            "--clusterrole=view",
            "--user=alice",
        ]),
    );
    let allowed = as_alice(&["get", "pods"]);
    assert!(
        String::from_utf8_lossy(&allowed.stderr)
            .contains("No resources found in default namespace."),
        "{}",
        describe(&allowed)
    );
    assert_eq!(
        stdout_str(&as_alice(&["auth", "can-i", "list", "pods"])).trim(),
        "yes"
    );
    let write = as_alice(&["create", "configmap", "x"]);
    assert!(
        String::from_utf8_lossy(&write.stderr).contains(
            "configmaps is forbidden: User \"alice\" cannot create resource \"configmaps\""
        ),
        "{}",
        describe(&write)
    );
    let other_ns = as_alice(&["get", "pods", "-n", "kube-system"]);
    assert!(!other_ns.status.success(), "{}", describe(&other_ns));

    let wrong = as_token("not-a-token");
    assert!(!wrong.status.success());
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("Unauthorized"),
        "{}",
        describe(&wrong)
    );
}
