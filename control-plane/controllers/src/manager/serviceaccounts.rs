//! The service-account controller and the root CA publisher, as upstream's
//! `pkg/controller/serviceaccount` and `pkg/controller/certificates/rootcacertpublisher`:
//!
//! - every active namespace has a `default` ServiceAccount, created again when deleted;
//! - every active namespace has the `kube-root-ca.crt` ConfigMap whose `ca.crt` is the cluster
//!   CA (what pods' token volumes project next to the token), put back when deleted or edited.
//!
//! Namespaces being deleted are left alone, since their contents are on the way out. The CA
//! comes from the kubeconfig the controllers run with ([`set_root_ca_from_kubeconfig`]), as
//! upstream's comes from `--root-ca-file`; without one only the ServiceAccounts are kept.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use tracing::Instrument;

use super::informer::{self, Change, Informer};
use super::queue::Queue;
use super::{Context, Error};

/// The service account every namespace gets.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";
/// The ConfigMap holding the cluster CA in every namespace.
pub const ROOT_CA_CONFIGMAP: &str = "kube-root-ca.crt";
/// Its key.
pub const ROOT_CA_KEY: &str = "ca.crt";
/// The description upstream's publisher puts on the ConfigMap.
const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";
/// Most namespaces waiting at once; a resync brings back any dropped.
const QUEUE_CAPACITY: usize = 100_000;
/// How often every namespace is checked again.
const RESYNC: Duration = Duration::from_secs(300);

/// The cluster CA (PEM) the publisher copies; set once per process.
static ROOT_CA: OnceLock<String> = OnceLock::new();

/// Why the CA could not be read from a kubeconfig.
#[derive(Debug, thiserror::Error)]
pub enum RootCaError {
    /// The kubeconfig could not be read or parsed.
    #[error("reading the kubeconfig: {0}")]
    Kubeconfig(#[from] kube::config::KubeconfigError),
    /// It names no CA for its current cluster.
    #[error("the kubeconfig's current cluster names no certificate authority")]
    Missing,
    /// The CA data or file is unreadable.
    #[error("the kubeconfig's certificate authority: {0}")]
    Unreadable(String),
}

/// Takes the CA the publisher copies from the kubeconfig the controllers run with (its
/// current cluster's `certificate-authority-data` or `certificate-authority`).
pub fn set_root_ca_from_kubeconfig(path: &Path) -> Result<(), RootCaError> {
    use base64::Engine as _;
    let config = kube::config::Kubeconfig::read_from(path)?;
    let context = config
        .contexts
        .iter()
        .find(|c| Some(&c.name) == config.current_context.as_ref())
        .and_then(|c| c.context.as_ref())
        .map(|c| c.cluster.clone());
    let cluster = config
        .clusters
        .iter()
        .find(|c| Some(&c.name) == context.as_ref())
        .or_else(|| config.clusters.first())
        .and_then(|c| c.cluster.as_ref())
        .ok_or(RootCaError::Missing)?;
    let pem = if let Some(data) = &cluster.certificate_authority_data {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .map_err(|e| RootCaError::Unreadable(e.to_string()))?;
        String::from_utf8(bytes).map_err(|e| RootCaError::Unreadable(e.to_string()))?
    } else if let Some(file) = &cluster.certificate_authority {
        std::fs::read_to_string(file)
            .map_err(|e| RootCaError::Unreadable(format!("{file}: {e}")))?
    } else {
        return Err(RootCaError::Missing);
    };
    let _ = ROOT_CA.set(pem);
    Ok(())
}

/// Keeps ConfigMaps' data only for the root CA ConfigMap: this informer watches every
/// ConfigMap but needs no other's contents.
fn trim_configmap(cm: &mut ConfigMap) {
    informer::trim_object(cm);
    if cm.metadata.name.as_deref() != Some(ROOT_CA_CONFIGMAP) {
        cm.data = None;
        cm.binary_data = None;
    }
}

struct Controller {
    client: kube::Client,
    namespaces: Arc<Informer<Namespace>>,
    accounts: Arc<Informer<ServiceAccount>>,
    configmaps: Arc<Informer<ConfigMap>>,
    root_ca: Option<String>,
}

/// Starts the controller: its own informers on namespaces, service accounts and ConfigMaps.
pub fn start(ctx: &Arc<Context>) -> Vec<BoxFuture<'static, ()>> {
    let c = Arc::new(Controller {
        client: ctx.client.clone(),
        namespaces: Informer::new("namespaces", informer::trim_object),
        accounts: Informer::new("serviceaccounts", informer::trim_object),
        configmaps: Informer::new("configmaps", trim_configmap),
        root_ca: ROOT_CA.get().cloned(),
    });
    if c.root_ca.is_none() {
        tracing::warn!("no cluster CA known; kube-root-ca.crt ConfigMaps are not published");
    }
    let queue: Queue<String> = Queue::new("serviceaccounts", QUEUE_CAPACITY);
    let q = queue.clone();
    c.namespaces.on_change(move |ch| match ch {
        Change::Added(ns) | Change::Updated { new: ns, .. } => {
            if let Some(n) = &ns.metadata.name {
                q.add(n.clone());
            }
        }
        Change::Deleted(_) => {}
    });
    let q = queue.clone();
    c.accounts.on_change(move |ch| {
        if let Change::Deleted(sa) = ch {
            if sa.metadata.name.as_deref() == Some(DEFAULT_SERVICE_ACCOUNT) {
                if let Some(ns) = &sa.metadata.namespace {
                    q.add(ns.clone());
                }
            }
        }
    });
    let q = queue.clone();
    c.configmaps.on_change(move |ch| {
        let cm = match ch {
            Change::Updated { new, .. } => new,
            Change::Deleted(cm) => cm,
            Change::Added(_) => return,
        };
        if cm.metadata.name.as_deref() == Some(ROOT_CA_CONFIGMAP) {
            if let Some(ns) = &cm.metadata.namespace {
                q.add(ns.clone());
            }
        }
    });
    let mut tasks: Vec<BoxFuture<'static, ()>> = vec![
        Box::pin(c.namespaces.clone().run(Api::all(c.client.clone()))),
        Box::pin(c.accounts.clone().run(Api::all(c.client.clone()))),
        Box::pin(c.configmaps.clone().run(Api::all(c.client.clone()))),
    ];
    let nss = c.namespaces.clone();
    tasks.push(super::resync(queue.clone(), RESYNC, move || {
        nss.store()
            .list()
            .iter()
            .filter_map(|n| n.metadata.name.clone())
            .collect()
    }));
    let sync = {
        let c = c.clone();
        move |ns: String| {
            let c = c.clone();
            async move { c.sync(&ns).await }
        }
    };
    tasks.extend(super::workers("serviceaccounts", queue, 2, sync));
    tasks
}

impl Controller {
    /// Brings one namespace's `default` ServiceAccount and root CA ConfigMap into being.
    async fn sync(&self, ns: &str) -> Result<(), Error> {
        let span = tracing::debug_span!("serviceaccounts", namespace = %ns);
        async {
            self.namespaces.wait_synced().await;
            self.accounts.wait_synced().await;
            self.configmaps.wait_synced().await;
            let Some(namespace) = self.namespaces.store().get_named("", ns) else {
                return Ok(());
            };
            let terminating = namespace.metadata.deletion_timestamp.is_some()
                || namespace.status.as_ref().and_then(|s| s.phase.as_deref())
                    == Some("Terminating");
            if terminating {
                return Ok(());
            }
            self.ensure_account(ns).await?;
            if let Some(ca) = &self.root_ca {
                self.ensure_root_ca(ns, ca).await?;
            }
            Ok(())
        }
        .instrument(span)
        .await
    }

    async fn ensure_account(&self, ns: &str) -> Result<(), Error> {
        if self
            .accounts
            .store()
            .get_named(ns, DEFAULT_SERVICE_ACCOUNT)
            .is_some()
        {
            return Ok(());
        }
        let sa = ServiceAccount {
            metadata: ObjectMeta {
                name: Some(DEFAULT_SERVICE_ACCOUNT.into()),
                namespace: Some(ns.into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), ns);
        match api.create(&PostParams::default(), &sa).await {
            Ok(_) => {
                tracing::info!(namespace = %ns, "created the default service account");
                Ok(())
            }
            // Exists already (the cache is behind), or the namespace went meanwhile.
            Err(e) if super::conflict(&e) || super::not_found(&e) || forbidden(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn ensure_root_ca(&self, ns: &str, ca: &str) -> Result<(), Error> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), ns);
        let data = BTreeMap::from([(ROOT_CA_KEY.to_string(), ca.to_string())]);
        match self.configmaps.store().get_named(ns, ROOT_CA_CONFIGMAP) {
            None => {
                let cm = ConfigMap {
                    metadata: ObjectMeta {
                        name: Some(ROOT_CA_CONFIGMAP.into()),
                        namespace: Some(ns.into()),
                        annotations: Some(BTreeMap::from([(
                            "kubernetes.io/description".to_string(),
                            DESCRIPTION.to_string(),
                        )])),
                        ..Default::default()
                    },
                    data: Some(data),
                    ..Default::default()
                };
                match api.create(&PostParams::default(), &cm).await {
                    Ok(_) => Ok(()),
                    Err(e) if super::conflict(&e) || super::not_found(&e) || forbidden(&e) => {
                        Ok(())
                    }
                    Err(e) => Err(e.into()),
                }
            }
            Some(cm) if cm.data.as_ref() == Some(&data) && cm.binary_data.is_none() => Ok(()),
            Some(cm) => {
                let mut next = (*cm).clone();
                next.data = Some(data);
                next.binary_data = None;
                next.metadata.managed_fields = None;
                match api
                    .replace(ROOT_CA_CONFIGMAP, &PostParams::default(), &next)
                    .await
                {
                    Ok(_) => Ok(()),
                    Err(e) if super::not_found(&e) => Ok(()),
                    Err(e) => Err(e.into()),
                }
            }
        }
    }
}

/// Whether a kube error is the API's 403 (creating in a namespace being deleted).
fn forbidden(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 403)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_root_ca_configmap_keeps_its_data() {
        let mut other = ConfigMap {
            metadata: ObjectMeta {
                name: Some("app".into()),
                ..Default::default()
            },
            data: Some(BTreeMap::from([("k".into(), "v".into())])),
            ..Default::default()
        };
        trim_configmap(&mut other);
        assert!(other.data.is_none());
        let mut ca = ConfigMap {
            metadata: ObjectMeta {
                name: Some(ROOT_CA_CONFIGMAP.into()),
                ..Default::default()
            },
            data: Some(BTreeMap::from([(ROOT_CA_KEY.into(), "pem".into())])),
            ..Default::default()
        };
        trim_configmap(&mut ca);
        assert!(ca.data.is_some());
    }

    #[test]
    fn the_ca_comes_from_the_kubeconfig() {
        use base64::Engine as _;
        let dir = std::env::temp_dir().join(format!("skiff-sa-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("kubeconfig");
        let data = base64::engine::general_purpose::STANDARD.encode("PEM");
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://x\n    certificate-authority-data: {data}\ncontexts:\n- name: x\n  context:\n    cluster: c\n    user: u\ncurrent-context: x\nusers:\n- name: u\n  user: {{}}\n"
            ),
        )
        .unwrap();
        set_root_ca_from_kubeconfig(&path).unwrap();
        assert_eq!(ROOT_CA.get().map(String::as_str), Some("PEM"));
        std::fs::write(&path, "apiVersion: v1\nkind: Config\nclusters: []\n").unwrap();
        assert!(set_root_ca_from_kubeconfig(&path).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
