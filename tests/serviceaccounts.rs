//! ServiceAccounts end to end: the controller's `default` account and `kube-root-ca.crt` in
//! every namespace, tokens from `kubectl create token` that `kubectl auth whoami` accepts (and
//! expired, tampered or unbound ones it refuses), legacy token Secrets, and (as root) a real
//! pod's projected token volume.

mod common;

use std::process::{Command, Output};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::cluster::{describe, run_with_timeout, wait_until};
use common::control_plane::Init;
use common::images::require;
use common::pods::{pod_yaml, NodeCluster};
use serde_json::{json, Value};

const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
const MOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// kubectl reaching `init`'s API server with nothing but `token` (no client certificate).
fn kubectl_with_token(init: &Init, token: &str, args: &[&str]) -> Output {
    let home = init.dir.path().join("home");
    let _ = std::fs::create_dir_all(&home);
    let empty = init.dir.path().join("token.conf");
    if !empty.exists() {
        std::fs::write(&empty, "apiVersion: v1\nkind: Config\n").expect("write kubeconfig");
    }
    run_with_timeout(
        Command::new("kubectl")
            .env("HOME", &home)
            .arg("--kubeconfig")
            .arg(&empty)
            .arg(format!("--server=https://{}", init.api))
            .arg(format!(
                "--certificate-authority={}",
                init.pki().join("ca.crt").display()
            ))
            .arg(format!("--token={token}"))
            .args(args),
        None,
        Duration::from_secs(30),
    )
}

/// `kubectl auth whoami -o json` with `token`: the UserInfo, or the failure's stderr.
fn whoami(init: &Init, token: &str) -> Result<Value, String> {
    let out = kubectl_with_token(init, token, &["auth", "whoami", "-o", "json"]);
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let v: Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    Ok(v["status"]["userInfo"].clone())
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

const B64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn b64url_encode(data: &[u8]) -> String {
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(B64URL[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

fn b64url_decode(text: &str) -> Vec<u8> {
    let vals: Vec<u32> = text
        .bytes()
        .map(|c| B64URL.iter().position(|&b| b == c).expect("base64url") as u32)
        .collect();
    let mut out = Vec::new();
    for chunk in vals.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, v)| acc | (v << (18 - 6 * i)));
        for i in 0..chunk.len().saturating_sub(1) {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    out
}

/// A JWT's claims.
fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT has three parts");
    serde_json::from_slice(&b64url_decode(payload)).expect("JSON claims")
}

/// Signs `claims` with the cluster's service-account key (through openssl), under the header
/// of a real token, so the only difference from a genuine token is the claims.
fn sign_with_cluster_key(init: &Init, header: &str, claims: &Value) -> String {
    let input = format!("{header}.{}", b64url_encode(claims.to_string().as_bytes()));
    let out = run_with_timeout(
        Command::new("openssl")
            .args(["dgst", "-sha256", "-sign"])
            .arg(init.pki().join("sa.key")),
        Some(input.as_bytes()),
        Duration::from_secs(10),
    );
    assert!(out.status.success(), "openssl: {}", describe(&out));
    format!("{input}.{}", b64url_encode(&der_to_raw(&out.stdout)))
}

/// An ECDSA signature from DER (SEQUENCE of two INTEGERs) to JWS's fixed 64 bytes.
fn der_to_raw(der: &[u8]) -> Vec<u8> {
    let mut raw = Vec::new();
    let mut i = 2; // SEQUENCE tag and (short) length
    for _ in 0..2 {
        assert_eq!(der[i], 2, "INTEGER");
        let len = der[i + 1] as usize;
        let int = &der[i + 2..i + 2 + len];
        let int = &int[int.len().saturating_sub(32)..];
        raw.extend(std::iter::repeat_n(0u8, 32 - int.len()));
        raw.extend_from_slice(int);
        i += 2 + len;
    }
    raw
}

fn get_json(init: &Init, args: &[&str]) -> Option<Value> {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend(["-o", "json"]);
    let out = init.kubectl(&all);
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

#[test]
fn namespaces_get_a_default_account_and_the_root_ca() {
    let init = Init::start("sa_namespaces");
    let ca = std::fs::read_to_string(init.pki().join("ca.crt")).expect("ca.crt");
    init.ok(&["create", "namespace", "demo"]);
    for ns in ["demo", "default", "kube-system"] {
        let seen = wait_until(Duration::from_secs(20), Duration::from_millis(100), || {
            get_json(&init, &["serviceaccount", "default", "-n", ns]).is_some()
                && get_json(&init, &["configmap", "kube-root-ca.crt", "-n", ns])
                    .is_some_and(|cm| cm["data"]["ca.crt"] == ca.as_str())
        });
        assert!(
            seen,
            "namespace {ns} lacks its default account or root CA\n{}",
            init.log()
        );
    }

    // Deleted, they come back (the account with a new uid); an edited CA is put back.
    let uid = get_json(&init, &["sa", "default", "-n", "demo"]).unwrap()["metadata"]["uid"].clone();
    init.ok(&["delete", "sa", "default", "-n", "demo"]);
    init.ok(&["delete", "configmap", "kube-root-ca.crt", "-n", "demo"]);
    let back = wait_until(Duration::from_secs(20), Duration::from_millis(100), || {
        get_json(&init, &["sa", "default", "-n", "demo"])
            .is_some_and(|sa| sa["metadata"]["uid"] != uid)
            && get_json(&init, &["configmap", "kube-root-ca.crt", "-n", "demo"]).is_some()
    });
    assert!(back, "not recreated\n{}", init.log());
    init.ok(&[
        "patch",
        "configmap",
        "kube-root-ca.crt",
        "-n",
        "demo",
        "--type=merge",
        "-p",
        r#"{"data":{"ca.crt":"tampered"}}"#,
    ]);
    let fixed = wait_until(Duration::from_secs(20), Duration::from_millis(100), || {
        get_json(&init, &["configmap", "kube-root-ca.crt", "-n", "demo"])
            .is_some_and(|cm| cm["data"]["ca.crt"] == ca.as_str())
    });
    assert!(fixed, "the root CA was not restored");
}

#[test]
fn created_tokens_authenticate_until_expired_or_unbound() {
    let init = Init::start("sa_tokens");
    init.ok(&["create", "namespace", "app"]);
    assert!(wait_until(
        Duration::from_secs(20),
        Duration::from_millis(100),
        || { get_json(&init, &["sa", "default", "-n", "app"]).is_some() }
    ));
    let token = init
        .ok(&["create", "token", "default", "-n", "app"])
        .trim()
        .to_string();
    let claims = claims_of(&token);
    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(claims["sub"], "system:serviceaccount:app:default");
    assert_eq!(claims["aud"], json!([ISSUER]));
    assert_eq!(claims["kubernetes.io"]["namespace"], "app");
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        3600
    );

    let user = whoami(&init, &token).expect("the token authenticates");
    assert_eq!(user["username"], "system:serviceaccount:app:default");
    assert_eq!(
        user["groups"],
        json!([
            "system:serviceaccounts",
            "system:serviceaccounts:app",
            "system:authenticated"
        ])
    );
    let sa = get_json(&init, &["sa", "default", "-n", "app"]).unwrap();
    assert_eq!(user["uid"], sa["metadata"]["uid"]);
    // The plain-text output kubectl users see.
    let out = kubectl_with_token(&init, &token, &["auth", "whoami"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("system:serviceaccount:app:default"),
        "{}",
        describe(&out)
    );
    // RBAC applies to the account: nothing is granted yet.
    let out = kubectl_with_token(&init, &token, &["get", "pods", "-n", "app"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Forbidden"),
        "{}",
        describe(&out)
    );
    init.ok(&[
        "create",
        "rolebinding",
        "view",
        "-n",
        "app",
        "--clusterrole=view",
        "--serviceaccount=app:default",
    ]);
    let allowed = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        kubectl_with_token(&init, &token, &["get", "pods", "-n", "app"])
            .status
            .success()
    });
    assert!(allowed, "the bound role does not apply");

    // Audience, lifetime and the minimum lifetime.
    let other = init.ok(&[
        "create",
        "token",
        "default",
        "-n",
        "app",
        "--audience=vault",
        "--duration=20m",
    ]);
    let c = claims_of(other.trim());
    assert_eq!(c["aud"], json!(["vault"]));
    assert_eq!(
        c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(),
        1200
    );
    let err = whoami(&init, other.trim()).unwrap_err();
    assert!(err.contains("Unauthorized"), "{err}");
    let err = init.fails(&["create", "token", "default", "-n", "app", "--duration=5m"]);
    assert!(err.contains("less than 10 minutes"), "{err}");
    let err = init.fails(&["create", "token", "nobody", "-n", "app"]);
    assert!(
        err.contains("serviceaccounts \"nobody\" not found"),
        "{err}"
    );

    // A token signed with the cluster key is accepted while current, refused once expired;
    // one whose claims were changed after signing is refused.
    let header = token.split('.').next().unwrap();
    let mut c = claims.clone();
    let t = now();
    c["iat"] = json!(t - 700);
    c["nbf"] = json!(t - 700);
    c["exp"] = json!(t + 600);
    let current = sign_with_cluster_key(&init, header, &c);
    assert!(
        whoami(&init, &current).is_ok(),
        "a current token signed by the test"
    );
    c["exp"] = json!(t - 5);
    let expired = sign_with_cluster_key(&init, header, &c);
    let err = whoami(&init, &expired).unwrap_err();
    assert!(err.contains("Unauthorized"), "{err}");
    let mut tampered_claims = claims.clone();
    tampered_claims["sub"] = json!("system:serviceaccount:kube-system:default");
    tampered_claims["kubernetes.io"]["namespace"] = json!("kube-system");
    let parts: Vec<&str> = token.split('.').collect();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64url_encode(tampered_claims.to_string().as_bytes()),
        parts[2]
    );
    let err = whoami(&init, &tampered).unwrap_err();
    assert!(err.contains("Unauthorized"), "{err}");
    for junk in ["nonsense", "a.b.c", "...", &format!("{token}x")] {
        let err = whoami(&init, junk).unwrap_err();
        assert!(err.contains("Unauthorized"), "{junk}: {err}");
    }

    // Bound to a pod: valid while the pod lives, refused once it is gone.
    init.ok(&[
        "run",
        "holder",
        "-n",
        "app",
        "--image=busybox",
        "--restart=Never",
    ]);
    let bound = init.ok(&[
        "create",
        "token",
        "default",
        "-n",
        "app",
        "--bound-object-kind=Pod",
        "--bound-object-name=holder",
    ]);
    let bound = bound.trim();
    let pod = get_json(&init, &["pod", "holder", "-n", "app"]).unwrap();
    let c = claims_of(bound);
    assert_eq!(c["kubernetes.io"]["pod"]["name"], "holder");
    assert_eq!(c["kubernetes.io"]["pod"]["uid"], pod["metadata"]["uid"]);
    let user = whoami(&init, bound).expect("a pod-bound token");
    assert_eq!(
        user["extra"]["authentication.kubernetes.io/pod-name"],
        json!(["holder"])
    );
    init.ok(&[
        "delete",
        "pod",
        "holder",
        "-n",
        "app",
        "--grace-period=0",
        "--force",
    ]);
    let refused = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        whoami(&init, bound).is_err()
    });
    assert!(refused, "a token bound to a deleted pod still works");

    // Deleting the account ends every token of it, even once an account of the same name
    // is back (it has another uid).
    init.ok(&["delete", "sa", "default", "-n", "app"]);
    let refused = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        whoami(&init, &token).is_err()
    });
    assert!(refused, "a token of a deleted account still works");
    assert!(wait_until(
        Duration::from_secs(20),
        Duration::from_millis(100),
        || { get_json(&init, &["sa", "default", "-n", "app"]).is_some() }
    ));
    assert!(
        whoami(&init, &token).is_err(),
        "the recreated account has another uid"
    );
}

#[test]
fn legacy_token_secrets_are_filled_in() {
    let init = Init::start("sa_legacy");
    init.ok(&["create", "namespace", "old"]);
    init.ok(&["create", "serviceaccount", "robot", "-n", "old"]);
    let secret = r#"apiVersion: v1
kind: Secret
metadata:
  name: robot-token
  namespace: old
  annotations:
    kubernetes.io/service-account.name: robot
type: kubernetes.io/service-account-token
"#;
    let out = init.kubectl_in(&["apply", "-f", "-"], Some(secret.as_bytes()));
    assert!(out.status.success(), "{}", describe(&out));
    let s = get_json(&init, &["secret", "robot-token", "-n", "old"]).unwrap();
    let sa = get_json(&init, &["sa", "robot", "-n", "old"]).unwrap();
    assert_eq!(
        s["metadata"]["annotations"]["kubernetes.io/service-account.uid"],
        sa["metadata"]["uid"]
    );
    let field = |k: &str| {
        let out = init.ok(&[
            "get",
            "secret",
            "robot-token",
            "-n",
            "old",
            &format!("-o=go-template={{{{index .data \"{k}\" | base64decode}}}}"),
        ]);
        out
    };
    assert_eq!(field("namespace"), "old");
    assert_eq!(
        field("ca.crt"),
        std::fs::read_to_string(init.pki().join("ca.crt")).unwrap()
    );
    let token = field("token");
    let c = claims_of(&token);
    assert_eq!(c["iss"], "kubernetes/serviceaccount");
    assert_eq!(c["kubernetes.io/serviceaccount/secret.name"], "robot-token");
    assert!(c.get("exp").is_none(), "legacy tokens do not expire");
    let user = whoami(&init, &token).expect("the legacy token authenticates");
    assert_eq!(user["username"], "system:serviceaccount:old:robot");
    // Gone with its Secret.
    init.ok(&["delete", "secret", "robot-token", "-n", "old"]);
    assert!(wait_until(
        Duration::from_secs(10),
        Duration::from_millis(100),
        || { whoami(&init, &token).is_err() }
    ));
}

#[test]
fn pods_get_the_token_volume_unless_opted_out() {
    let init = Init::start("sa_admission");
    assert!(wait_until(
        Duration::from_secs(20),
        Duration::from_millis(100),
        || { get_json(&init, &["sa", "default"]).is_some() }
    ));
    let pod = r#"apiVersion: v1
kind: Pod
metadata:
  name: web
spec:
  initContainers:
  - name: init
    image: busybox
  containers:
  - name: a
    image: busybox
  - name: b
    image: busybox
    volumeMounts:
    - name: own
      mountPath: /var/run/secrets/kubernetes.io/serviceaccount
  volumes:
  - name: own
    emptyDir: {}
"#;
    let out = init.kubectl_in(&["apply", "-f", "-"], Some(pod.as_bytes()));
    assert!(out.status.success(), "{}", describe(&out));
    let p = get_json(&init, &["pod", "web"]).unwrap();
    assert_eq!(p["spec"]["serviceAccountName"], "default");
    assert_eq!(p["spec"]["serviceAccount"], "default");
    let vols = p["spec"]["volumes"].as_array().unwrap();
    let v = vols
        .iter()
        .find(|v| v["name"].as_str().unwrap().starts_with("kube-api-access-"))
        .expect("token volume");
    let name = v["name"].as_str().unwrap();
    assert_eq!(name.len(), "kube-api-access-".len() + 5);
    assert_eq!(
        v["projected"],
        json!({"defaultMode": 420, "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
        ]})
    );
    let mount = json!({"name": name, "readOnly": true, "mountPath": MOUNT});
    assert_eq!(
        p["spec"]["initContainers"][0]["volumeMounts"],
        json!([mount])
    );
    assert_eq!(p["spec"]["containers"][0]["volumeMounts"], json!([mount]));
    assert_eq!(
        p["spec"]["containers"][1]["volumeMounts"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Opted out by the pod, or by its account.
    init.ok(&[
        "run",
        "quiet",
        "--image=busybox",
        "--overrides",
        r#"{"spec":{"automountServiceAccountToken":false}}"#,
    ]);
    let p = get_json(&init, &["pod", "quiet"]).unwrap();
    assert!(p["spec"]["volumes"].is_null(), "{p}");
    init.ok(&["create", "sa", "shy"]);
    init.ok(&[
        "patch",
        "sa",
        "shy",
        "-p",
        r#"{"automountServiceAccountToken":false}"#,
    ]);
    init.ok(&[
        "run",
        "shy",
        "--image=busybox",
        "--overrides",
        r#"{"spec":{"serviceAccountName":"shy"}}"#,
    ]);
    let p = get_json(&init, &["pod", "shy"]).unwrap();
    assert_eq!(p["spec"]["serviceAccountName"], "shy");
    assert!(p["spec"]["volumes"].is_null(), "{p}");
    // A missing account other than default is refused, as upstream.
    let err = init.fails(&[
        "run",
        "lost",
        "--image=busybox",
        "--overrides",
        r#"{"spec":{"serviceAccountName":"ghost"}}"#,
    ]);
    assert!(
        err.contains("error looking up service account default/ghost"),
        "{err}"
    );
}

#[test]
fn a_pod_reads_its_projected_token() {
    let name = "a_pod_reads_its_projected_token";
    if !require(name, true, &[]) {
        return;
    }
    let c = NodeCluster::start(name);
    assert!(wait_until(
        Duration::from_secs(20),
        Duration::from_millis(100),
        || { get_json(&c.init, &["configmap", "kube-root-ca.crt"]).is_some() }
    ));
    c.apply(&pod_yaml("reader", &c.node, "exec sleep 3600", ""));
    let pod = c.wait_pod("reader", Duration::from_secs(60), "Running", |p| {
        p["status"]["phase"] == "Running"
    });
    let exec = |file: &str| {
        c.init
            .ok(&["exec", "reader", "--", "cat", &format!("{MOUNT}/{file}")])
    };
    let token = exec("token");
    let claims = claims_of(token.trim());
    assert_eq!(claims["kubernetes.io"]["pod"]["name"], "reader");
    assert_eq!(
        claims["kubernetes.io"]["pod"]["uid"],
        pod["metadata"]["uid"]
    );
    assert_eq!(claims["kubernetes.io"]["node"]["name"], c.node.as_str());
    assert_eq!(claims["sub"], "system:serviceaccount:default:default");
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        3607
    );
    assert_eq!(exec("namespace"), "default");
    let ca = std::fs::read_to_string(c.init.pki().join("ca.crt")).unwrap();
    assert_eq!(exec("ca.crt"), ca);
    let user = whoami(&c.init, token.trim()).expect("the pod's token authenticates");
    assert_eq!(user["username"], "system:serviceaccount:default:default");
    assert_eq!(
        user["extra"]["authentication.kubernetes.io/pod-name"],
        json!(["reader"])
    );
    // The mount is read-only in the container.
    let out = c.init.kubectl(&[
        "exec",
        "reader",
        "--",
        "sh",
        "-c",
        &format!("echo x > {MOUNT}/token"),
    ]);
    assert!(!out.status.success(), "the token volume is writable");
}
