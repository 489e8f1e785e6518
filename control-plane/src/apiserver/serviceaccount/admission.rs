//! Create-time admission for service accounts, as upstream runs it:
//!
//! - pods (upstream's ServiceAccount admission plugin): `spec.serviceAccountName` defaults to
//!   `default`, and unless `automountServiceAccountToken: false` (the pod's, else the service
//!   account's) the pod gets the `kube-api-access-<5 random>` projected volume (a bound token
//!   expiring after 3607 s, the `kube-root-ca.crt` ConfigMap's `ca.crt`, the namespace) mounted
//!   read-only at `/var/run/secrets/kubernetes.io/serviceaccount` in every container and init
//!   container that has nothing mounted there;
//! - Secrets of type `kubernetes.io/service-account-token` (upstream's token controller, done
//!   here at once since the API server holds the key): `token`, `ca.crt` and `namespace` are
//!   filled in and the service account's uid is recorded in an annotation.
//!
//! One deviation: a pod naming the `default` service account is admitted even while that
//! account does not exist yet (the service-account controller creates it moments after its
//! namespace), where upstream refuses it; its kubelet waits for the account to get a token.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{json, Map, Value};

use super::jwt::{LegacyClaims, LEGACY_ISSUER};
use super::{lookup, lookup_linearized, uid_of, username, ServiceAccounts};
use crate::apiserver::objects;
use crate::apiserver::status::Status;
use crate::store::Store;

/// The prefix of the token volume's name.
pub const VOLUME_PREFIX: &str = "kube-api-access-";
/// Where containers find the token, CA and namespace.
pub const MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The ConfigMap the root CA publisher keeps in every namespace.
pub const ROOT_CA_CONFIGMAP: &str = "kube-root-ca.crt";
/// The token lifetime the volume asks for (upstream's 3607, recognisable as the admission's).
pub const TOKEN_EXPIRATION_SECONDS: i64 = 3607;
/// The Secret type of legacy tokens.
pub const TOKEN_SECRET_TYPE: &str = "kubernetes.io/service-account-token";
/// The annotation naming a legacy token Secret's service account.
pub const SA_NAME_ANNOTATION: &str = "kubernetes.io/service-account.name";
/// The annotation holding that service account's uid.
pub const SA_UID_ANNOTATION: &str = "kubernetes.io/service-account.uid";
const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// Runs the service-account admission for a new object of `group`/`kind`.
pub async fn on_create(
    store: &Store,
    group: &str,
    kind: &str,
    obj: &mut Value,
) -> Result<(), Status> {
    match (group, kind) {
        ("", "Pod") => admit_pod(store, obj).await,
        ("", "Secret") => fill_token_secret(store, obj).await,
        _ => Ok(()),
    }
}

async fn admit_pod(store: &Store, pod: &mut Value) -> Result<(), Status> {
    if pod["metadata"]["annotations"][MIRROR_ANNOTATION].is_string() {
        return Ok(());
    }
    let ns = pod["metadata"]["namespace"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let pod_name = objects::name_of(pod).to_string();
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    let text = |spec: &Map<String, Value>, k: &str| {
        spec.get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let sa_name = text(spec, "serviceAccountName")
        .or_else(|| text(spec, "serviceAccount"))
        .unwrap_or_else(|| "default".to_string());
    spec.insert("serviceAccountName".into(), json!(sa_name));
    spec.insert("serviceAccount".into(), json!(sa_name));
    // This member's copy first, as upstream reads its informer cache; a miss is read again
    // linearizably, as upstream falls back to a live lookup.
    let sa = match lookup(store, "serviceaccounts", Some(&ns), &sa_name) {
        Some(sa) => Some(sa),
        None => lookup_linearized(store, "serviceaccounts", Some(&ns), &sa_name).await?,
    };
    if sa.is_none() && sa_name != "default" {
        return Err(Status::forbidden(format!(
            "pods \"{pod_name}\" is forbidden: error looking up service account {ns}/{sa_name}: serviceaccount \"{sa_name}\" not found"
        )));
    }
    let automount = spec
        .get("automountServiceAccountToken")
        .and_then(Value::as_bool)
        .or_else(|| sa.as_ref()?["automountServiceAccountToken"].as_bool())
        .unwrap_or(true);
    if automount {
        mount_token(spec);
    }
    Ok(())
}

/// The projected volume upstream's admission adds, as the API returns it (defaulted).
pub fn token_volume(name: &str) -> Value {
    json!({
        "name": name,
        "projected": {
            "defaultMode": 420,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": TOKEN_EXPIRATION_SECONDS, "path": "token"}},
                {"configMap": {"name": ROOT_CA_CONFIGMAP, "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ],
        },
    })
}

/// Adds the token volume (unless one exists) and its mount to every container and init
/// container without a mount at [`MOUNT_PATH`].
fn mount_token(spec: &mut Map<String, Value>) {
    let names: Vec<String> = spec
        .get("volumes")
        .and_then(Value::as_array)
        .map(|v| {
            v.iter()
                .filter_map(|v| v["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let existing = names.iter().find(|n| n.starts_with(VOLUME_PREFIX)).cloned();
    let volume = existing.clone().unwrap_or_else(|| loop {
        let n = format!("{VOLUME_PREFIX}{}", objects::name_suffix());
        if !names.contains(&n) {
            break n;
        }
    });
    for list in ["initContainers", "containers"] {
        let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) else {
            continue;
        };
        for c in containers.iter_mut().filter(|c| c.is_object()) {
            let mounts = &mut c["volumeMounts"];
            if !mounts.is_array() {
                *mounts = json!([]);
            }
            let Some(mounts) = mounts.as_array_mut() else {
                continue;
            };
            if mounts.iter().any(|m| m["mountPath"] == MOUNT_PATH) {
                continue;
            }
            mounts.push(json!({"name": volume, "readOnly": true, "mountPath": MOUNT_PATH}));
        }
    }
    if existing.is_none() {
        let volumes = spec.entry("volumes").or_insert_with(|| json!([]));
        if !volumes.is_array() {
            *volumes = json!([]);
        }
        if let Some(v) = volumes.as_array_mut() {
            v.push(token_volume(&volume));
        }
    }
}

/// Fills a new legacy token Secret: `token` (a never-expiring JWT naming the Secret), `ca.crt`
/// and `namespace`, and the service account's uid annotation. A Secret whose service account
/// does not exist (or has another uid) is left as it is.
async fn fill_token_secret(store: &Store, secret: &mut Value) -> Result<(), Status> {
    if secret["type"] != TOKEN_SECRET_TYPE {
        return Ok(());
    }
    let Some(sas) = ServiceAccounts::current() else {
        return Ok(());
    };
    if secret["data"]["token"]
        .as_str()
        .is_some_and(|t| !t.is_empty())
    {
        return Ok(());
    }
    let Some(sa_name) = secret["metadata"]["annotations"][SA_NAME_ANNOTATION]
        .as_str()
        .filter(|n| !n.is_empty())
        .map(str::to_string)
    else {
        return Ok(());
    };
    let ns = secret["metadata"]["namespace"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let Some(sa) = lookup_linearized(store, "serviceaccounts", Some(&ns), &sa_name).await? else {
        tracing::info!(namespace = %ns, serviceaccount = %sa_name, "token secret names a missing service account; left unfilled");
        return Ok(());
    };
    let uid = uid_of(&sa).to_string();
    let annotations = &mut secret["metadata"]["annotations"];
    match annotations[SA_UID_ANNOTATION].as_str() {
        Some(u) if !u.is_empty() && u != uid => return Ok(()),
        _ => annotations[SA_UID_ANNOTATION] = json!(uid),
    }
    let claims = LegacyClaims {
        iss: LEGACY_ISSUER.to_string(),
        namespace: ns.clone(),
        secret_name: objects::name_of(secret).to_string(),
        service_account_name: sa_name.clone(),
        service_account_uid: uid,
        sub: username(&ns, &sa_name),
    };
    let token = sas
        .key()
        .sign(&claims)
        .map_err(|e| Status::internal(e.to_string()))?;
    if !secret["data"].is_object() {
        secret["data"] = json!({});
    }
    let data = &mut secret["data"];
    data["token"] = json!(STANDARD.encode(token));
    data["ca.crt"] = json!(STANDARD.encode(sas.ca_pem()));
    data["namespace"] = json!(STANDARD.encode(&ns));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_container_gets_the_mount_once() {
        let mut pod = json!({
            "initContainers": [{"name": "i"}],
            "containers": [
                {"name": "a", "volumeMounts": [{"name": "x", "mountPath": "/x"}]},
                {"name": "b", "volumeMounts": [{"name": "own", "mountPath": MOUNT_PATH}]},
            ],
            "volumes": [{"name": "x", "emptyDir": {}}],
        });
        let spec = pod.as_object_mut().unwrap();
        mount_token(spec);
        let vols = pod["volumes"].as_array().unwrap();
        assert_eq!(vols.len(), 2);
        let name = vols[1]["name"].as_str().unwrap().to_string();
        assert!(name.starts_with(VOLUME_PREFIX) && name.len() == VOLUME_PREFIX.len() + 5);
        assert_eq!(
            vols[1]["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"],
            3607
        );
        let mount = json!({"name": name, "readOnly": true, "mountPath": MOUNT_PATH});
        assert_eq!(pod["initContainers"][0]["volumeMounts"], json!([mount]));
        assert_eq!(pod["containers"][0]["volumeMounts"][1], mount);
        assert_eq!(
            pod["containers"][1]["volumeMounts"]
                .as_array()
                .unwrap()
                .len(),
            1
        );

        // A pod that already has a token volume keeps it and gains no second one.
        let spec = pod.as_object_mut().unwrap();
        mount_token(spec);
        assert_eq!(pod["volumes"].as_array().unwrap().len(), 2);
        assert_eq!(
            pod["containers"][0]["volumeMounts"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn odd_shapes_do_not_panic() {
        for mut spec in [
            json!({"containers": "x", "volumes": 3}),
            json!({"containers": [1, null, {"name": "a", "volumeMounts": "no"}]}),
            json!({}),
        ] {
            mount_token(spec.as_object_mut().unwrap());
        }
    }
}
