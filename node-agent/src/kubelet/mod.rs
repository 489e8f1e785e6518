//! The kubelet loop: the pods bound to this node, watched through the API server and made real
//! with the runtime, and their status reported back.
//!
//! | module | job |
//! |---|---|
//! | [`pod_worker`] | one task per pod: sandbox, volumes, containers, restarts, termination, status |
//! | [`status`] | phase, container statuses and conditions as upstream computes them |
//! | [`sandbox`] | the pod's shared namespaces held by bind mounts; `/etc/hosts`, `resolv.conf` |
//! | [`container_spec`] | a pod's container → the runtime's container configuration |
//! | [`env`] | environment: envFrom, env, valueFrom, `$(VAR)` expansion |
//! | [`resources`] | QoS class, pod and container cgroups, CPU/memory/pids/cpuset/blkio limits |
//! | [`cpu_manager`] | exclusive CPUs for Guaranteed pods' whole-CPU containers; the shared pool |
//! | [`images`] | pull policy, imagePullSecrets, image waiting reasons |
//! | [`image_user`] | the image's `USER` name resolved through its own passwd and group files |
//! | [`image_gc`] | removing unused images when the disk fills |
//! | [`local_path`] | the built-in local-path provisioner for persistent volume claims |
//! | [`probes`] | startup, liveness and readiness probes |
//! | [`hooks`] | preStop hooks and exec in containers |
//! | [`events`] | pod events through a bounded queue |
//! | [`api_source`] | ConfigMaps, Secrets and volumes from the API server |
//! | [`node_status`] | the Node object (capacity, nodeInfo, addresses, conditions) and its Lease heartbeat |
//! | [`volumes`] | a pod's volumes under `<pod_dir>/volumes/` (emptyDir, hostPath, configMap, secret, downwardAPI, projected, persistentVolumeClaim) and each container's bind mounts |
//! | [`downward`] | downward API values (`fieldRef`, `resourceFieldRef`) and resource quantity arithmetic |

pub mod api_source;
pub mod container_spec;
pub mod cpu_manager;
pub mod downward;
pub mod env;
pub mod events;
pub mod hooks;
pub mod image_gc;
pub mod image_user;
pub mod images;
pub mod local_path;
pub mod node_status;
pub mod pod_worker;
pub mod probes;
pub mod resources;
pub mod sandbox;
pub mod status;
pub mod volumes;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::Api;
use kube::runtime::{watcher, WatchStreamExt};
use tokio::sync::watch;

use crate::agent::AgentConfig;
use crate::image::ImageStore;
use crate::runtime::Runtime;
use crate::service::{ContainerRef, PodDirectory, PodRef};
use pod_worker::{Adopted, Update};
use sandbox::DnsSettings;
use volumes::ObjectSource;

/// The OCI annotations the kubelet writes on every container, so a restarted agent knows
/// what each container is.
pub mod annotations {
    /// The pod's uid.
    pub const POD_UID: &str = "io.kubernetes.pod.uid";
    /// The pod's name.
    pub const POD_NAME: &str = "io.kubernetes.pod.name";
    /// The pod's namespace.
    pub const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
    /// The container's name in the pod.
    pub const CONTAINER_NAME: &str = "io.kubernetes.container.name";
    /// The container's restart count when this instance started.
    pub const RESTART_COUNT: &str = "io.kubernetes.container.restartCount";
    /// `true` for init containers.
    pub const INIT: &str = "dev.skiff.container.init";
    /// `<reference>@<digest>` of the image.
    pub const IMAGE_ID: &str = "dev.skiff.image.id";
}

/// What every pod worker shares.
pub struct Shared {
    /// The agent's configuration.
    pub config: AgentConfig,
    /// The API server.
    pub client: kube::Client,
    /// The container runtime.
    pub runtime: Arc<Runtime>,
    /// The image store.
    pub images: Arc<ImageStore>,
    /// ConfigMaps, Secrets, volumes.
    pub objects: Arc<dyn ObjectSource>,
    /// Pod events.
    pub events: events::Events,
    /// What runs where, for the agent's service.
    pub directory: Arc<Directory>,
    /// The node's allocatable resources (limits default to them in the downward API).
    pub allocatable: BTreeMap<String, Quantity>,
    /// The host's resolvers, for pods' resolv.conf.
    pub dns: DnsSettings,
    /// Bounds the pod workers' concurrent writes to the API server.
    pub api_writes: tokio::sync::Semaphore,
    /// Exclusive and shared CPUs.
    pub cpus: cpu_manager::CpuManager,
}

/// How many status writes may be in flight at once.
pub const API_WRITES: usize = 4;

/// One container in the directory.
#[derive(Clone, Debug)]
pub struct DirContainer {
    /// Runtime id of the current (or last) instance.
    pub id: Option<String>,
    /// Its restart count.
    pub attempt: u32,
    /// Whether it runs.
    pub running: bool,
    /// Its CRI log directory.
    pub log_dir: PathBuf,
    /// Its cgroup.
    pub cgroup: Option<String>,
}

/// One pod in the directory.
#[derive(Clone, Debug)]
pub struct DirEntry {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Uid.
    pub uid: String,
    /// Its network namespace, once made.
    pub netns: Option<PathBuf>,
    /// Its cgroup.
    pub cgroup: String,
    /// Its containers by name.
    pub containers: HashMap<String, DirContainer>,
}

/// The pods this node runs, as pod workers publish them, for the agent's service.
#[derive(Debug, Default)]
pub struct Directory {
    pods: RwLock<HashMap<String, DirEntry>>,
}

impl Directory {
    /// Adds or replaces a pod.
    pub fn insert(&self, entry: DirEntry) {
        if let Ok(mut pods) = self.pods.write() {
            pods.insert(entry.uid.clone(), entry);
        }
    }

    /// Removes a pod.
    pub fn remove(&self, uid: &str) {
        if let Ok(mut pods) = self.pods.write() {
            pods.remove(uid);
        }
    }

    fn find<T>(&self, ns: &str, pod: &str, uid: &str, f: impl FnOnce(&DirEntry) -> T) -> Option<T> {
        let pods = self.pods.read().ok()?;
        pods.values()
            .find(|e| e.namespace == ns && e.name == pod && (uid.is_empty() || e.uid == uid))
            .map(f)
    }
}

impl PodDirectory for Directory {
    fn container(&self, ns: &str, pod: &str, uid: &str, ctr: &str) -> Option<ContainerRef> {
        self.find(ns, pod, uid, |e| {
            e.containers.get(ctr).map(|c| ContainerRef {
                id: c.id.clone(),
                log_dir: c.log_dir.clone(),
                attempt: c.attempt,
            })
        })
        .flatten()
    }

    fn pod_netns(&self, ns: &str, pod: &str, uid: &str) -> Option<PathBuf> {
        self.find(ns, pod, uid, |e| e.netns.clone()).flatten()
    }

    fn pods(&self) -> Vec<PodRef> {
        let Ok(pods) = self.pods.read() else {
            return Vec::new();
        };
        pods.values()
            .map(|e| PodRef {
                namespace: e.namespace.clone(),
                name: e.name.clone(),
                uid: e.uid.clone(),
                cgroup_path: e.cgroup.clone(),
                containers: e
                    .containers
                    .iter()
                    .filter(|(_, c)| c.running)
                    .filter_map(|(n, c)| c.cgroup.clone().map(|g| (n.clone(), g)))
                    .collect(),
            })
            .collect()
    }
}

/// The containers an earlier agent left, by pod uid.
fn adoptable(runtime: &Runtime) -> HashMap<String, Vec<Adopted>> {
    let mut out: HashMap<String, Vec<Adopted>> = HashMap::new();
    for id in runtime.list().unwrap_or_default() {
        let Ok(a) = runtime.annotations(&id) else {
            continue;
        };
        let (Some(uid), Some(name)) = (
            a.get(annotations::POD_UID),
            a.get(annotations::CONTAINER_NAME),
        ) else {
            continue;
        };
        out.entry(uid.clone()).or_default().push(Adopted {
            id: id.clone(),
            name: name.clone(),
            attempt: a
                .get(annotations::RESTART_COUNT)
                .and_then(|n| n.parse().ok())
                .unwrap_or(0),
            init: a.get(annotations::INIT).is_some_and(|v| v == "true"),
            image_id: a.get(annotations::IMAGE_ID).cloned(),
        });
    }
    out
}

struct WorkerHandle {
    tx: watch::Sender<Update>,
    task: tokio::task::JoinHandle<()>,
}

/// Watches the pods bound to this node and keeps one worker per pod, until the watch ends
/// (it never does: the watcher re-lists and retries on errors).
pub async fn run(shared: Arc<Shared>) {
    let node = shared.config.node_name.clone();
    let runtime = shared.runtime.clone();
    let mut leftovers = tokio::task::spawn_blocking(move || adoptable(&runtime))
        .await
        .unwrap_or_default();
    tracing::info!(node = %node, containers = leftovers.values().map(Vec::len).sum::<usize>(), "kubelet starting");
    tokio::spawn(image_gc::run(shared.clone()));
    tokio::spawn(local_path::sweep(shared.clone()));
    let pods: Api<Pod> = Api::all(shared.client.clone());
    let cfg = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
    let mut stream = watcher(pods, cfg).default_backoff().boxed();
    let mut workers: HashMap<String, WorkerHandle> = HashMap::new();
    let mut listed: Option<std::collections::HashSet<String>> = None;
    let mut first_list_done = false;
    while let Some(event) = stream.next().await {
        workers.retain(|_, w| !w.task.is_finished());
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!("watching pods: {e}");
                continue;
            }
        };
        match event {
            watcher::Event::Init => listed = Some(Default::default()),
            watcher::Event::InitApply(pod) | watcher::Event::Apply(pod) => {
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                if let Some(l) = listed.as_mut() {
                    l.insert(uid.clone());
                }
                let pod = Arc::new(pod);
                match workers.get(&uid) {
                    Some(w) => {
                        let _ = w.tx.send(Update::Pod(pod));
                    }
                    None => {
                        let (tx, rx) = watch::channel(Update::Pod(pod.clone()));
                        let adopted = leftovers.remove(&uid).unwrap_or_default();
                        let task = tokio::spawn(pod_worker::run(shared.clone(), pod, rx, adopted));
                        workers.insert(uid, WorkerHandle { tx, task });
                    }
                }
            }
            watcher::Event::Delete(pod) => {
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                if let Some(w) = workers.get(&uid) {
                    let _ = w.tx.send(Update::Gone);
                }
            }
            watcher::Event::InitDone => {
                if let Some(seen) = listed.take() {
                    for (uid, w) in &workers {
                        if !seen.contains(uid) {
                            let _ = w.tx.send(Update::Gone);
                        }
                    }
                }
                if !first_list_done {
                    first_list_done = true;
                    shared.cpus.retain(&|uid| workers.contains_key(uid));
                    // Containers of pods that no longer exist.
                    for (uid, containers) in leftovers.drain() {
                        tracing::info!(pod_uid = %uid, "removing containers of a pod that is gone");
                        remove_orphans(&shared, &uid, containers).await;
                    }
                }
            }
        }
    }
}

async fn remove_orphans(shared: &Arc<Shared>, uid: &str, containers: Vec<Adopted>) {
    let runtime = shared.runtime.clone();
    let sandbox = sandbox::Sandbox::at(shared.config.run_dir.join("pods").join(uid).join("ns"));
    let pod_dir = shared.config.root_dir.join("pods").join(uid);
    let root = shared.config.cgroup_root.clone();
    let uid = uid.to_string();
    let _ = tokio::task::spawn_blocking(move || {
        for c in containers {
            if let Err(e) = runtime.delete(&c.id) {
                tracing::warn!(container = %c.id, "delete: {e}");
            }
        }
        for qos in [
            resources::QosClass::Guaranteed,
            resources::QosClass::Burstable,
            resources::QosClass::BestEffort,
        ] {
            let _ = runtime
                .cgroups()
                .remove(&resources::pod_cgroup(&root, qos, &uid));
        }
        if sandbox.remove().is_ok() {
            if let Some(run_dir) = sandbox.dir().parent() {
                let _ = std::fs::remove_dir(run_dir);
            }
        }
        let _ = volumes::teardown(&pod_dir);
        let _ = std::fs::remove_dir_all(&pod_dir);
    })
    .await;
}
