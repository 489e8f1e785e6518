//! Namespace lifecycle: the system namespaces exist from the start, and deleting a namespace
//! marks it Terminating, removes everything in it, then removes it.

use serde_json::{json, Value};
use skiff_proto::etcdserverpb::DeleteRangeRequest;
use skiff_proto::store::command;
use tracing::{info, warn};

use super::catalog::{self, RESOURCES};
use super::objects;
use super::registry::{self, Claims};
use super::rest::Target;
use super::services;
use super::status::Status;
use crate::store::Store;

/// Namespaces every cluster has; they cannot be deleted.
pub const SYSTEM: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

fn namespaces() -> Result<&'static catalog::ResourceType, Status> {
    catalog::find("", "v1", "namespaces").ok_or_else(|| Status::internal("no namespaces".into()))
}

/// Creates the system namespaces that do not exist yet.
pub async fn ensure_system(store: &Store) -> Result<(), Status> {
    let res = namespaces()?;
    for name in SYSTEM {
        let key = registry::key(res, None, name);
        if registry::get(store, &key).await?.is_some() {
            continue;
        }
        let mut obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
        objects::prepare_create(res, &mut obj);
        registry::create(store, &key, &obj, &Claims::default()).await?;
    }
    Ok(())
}

/// Creates the `kubernetes` Service in `default`, pointing at the API server's port.
pub async fn ensure_api_service(store: &Store, port: u16) -> Result<(), Status> {
    let res = catalog::find("", "v1", "services")
        .ok_or_else(|| Status::internal("no services".into()))?;
    let key = registry::key(res, Some("default"), "kubernetes");
    if registry::get(store, &key).await?.is_some() {
        return Ok(());
    }
    let mut obj = services::api_service(port);
    objects::prepare_create(res, &mut obj);
    super::defaults::apply("", "Service", &mut obj);
    let claims = services::allocate(store, &mut obj, None)?;
    registry::create(store, &key, &obj, &claims).await?;
    Ok(())
}

/// Starts deleting namespace `cur`: it turns Terminating at once and goes once empty.
pub async fn delete(store: &Store, target: &Target, cur: Value) -> Result<Value, Status> {
    let name = objects::name_of(&cur).to_string();
    if SYSTEM.contains(&name.as_str()) && name != "kube-node-lease" {
        return Err(Status::forbidden(format!(
            "namespaces \"{name}\" is forbidden: this namespace may not be deleted"
        )));
    }
    if !cur["metadata"]["deletionTimestamp"].is_null() {
        return Ok(cur);
    }
    let mut next = cur.clone();
    next["metadata"]["deletionTimestamp"] = json!(objects::now_rfc3339());
    next["metadata"]["deletionGracePeriodSeconds"] = json!(0);
    next["status"]["phase"] = json!("Terminating");
    let key = target.key();
    let Some(stored) = registry::replace(store, &key, &cur, &next, &Claims::default()).await?
    else {
        return Err(Status::conflict("", "namespaces", "namespaces", &name));
    };
    let store = store.clone();
    tokio::spawn(async move {
        if let Err(e) = finalize(&store, &name, &key).await {
            warn!(namespace = %name, error = %e.message, "namespace cleanup failed");
        }
    });
    Ok(stored)
}

/// Removes every namespaced object in `name`, then the namespace itself.
async fn finalize(store: &Store, name: &str, key: &[u8]) -> Result<(), Status> {
    for res in RESOURCES.iter().filter(|r| r.namespaced && r.stored) {
        let prefix = registry::prefix(res, Some(name));
        if res.kind == "Service" {
            // Services hold allocations; give them back as each goes.
            let page = registry::list(store, &prefix, &Default::default(), |_| true).await?;
            for svc in page.items {
                let key = registry::key(res, Some(name), objects::name_of(&svc));
                registry::remove(store, &key, &svc, &services::release(&svc)).await?;
            }
        }
        let end = registry::prefix_end(&prefix);
        store
            .propose(command::Op::DeleteRange(DeleteRangeRequest {
                key: prefix,
                range_end: end,
                ..Default::default()
            }))
            .await
            .map_err(registry::store_error)?;
    }
    for _ in 0..16 {
        match registry::get(store, key).await? {
            None => break,
            Some(cur) => {
                if registry::remove(store, key, &cur, &Claims::default())
                    .await?
                    .is_some()
                {
                    break;
                }
            }
        }
    }
    info!(namespace = %name, "namespace deleted");
    Ok(())
}
