//! The node agent as a whole: the kubelet loop, node registration and the gRPC service the API
//! server calls, over one runtime and one image store. `skiff agent` and `skiff init` both run
//! it through [`run`].

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use crate::image::{ImageError, ImageStore};
use crate::kubelet::cpu_manager::{CpuManager, CpuSet};
use crate::kubelet::{self, api_source::ApiSource, events::Events, node_status, Directory, Shared};
use crate::runtime::{Runtime, RuntimeDirs, RuntimeError};
use crate::service::AgentService;

/// Everything the agent is told at start.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// The Node object's name.
    pub node_name: String,
    /// How to reach the API server, and as whom.
    pub kubeconfig: PathBuf,
    /// Persistent state: images, containers' writable layers, pod volumes.
    pub root_dir: PathBuf,
    /// State that must not survive a reboot (a tmpfs): runtime state, bundles, namespaces.
    pub run_dir: PathBuf,
    /// Where containers' CRI logs go (`<dir>/<ns>_<pod>_<uid>/<ctr>/<n>.log`).
    pub log_dir: PathBuf,
    /// The gRPC service's address; its port is the Node's kubelet endpoint.
    pub listen: SocketAddr,
    /// The address the Node reports as InternalIP, where the API server reaches the service.
    pub node_ip: IpAddr,
    /// The binary run as each container's shim (this one).
    pub shim_binary: PathBuf,
    /// The cgroup under which pods' cgroups are made.
    pub cgroup_root: String,
}

/// Why the agent could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The kubeconfig could not be read or used.
    #[error("kubeconfig {path}: {message}")]
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// The runtime could not be opened.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The image store could not be opened.
    #[error(transparent)]
    Images(#[from] ImageError),
    /// The gRPC service could not listen or failed.
    #[error("agent service on {addr}: {message}")]
    Serve {
        /// Its address.
        addr: SocketAddr,
        /// What went wrong.
        message: String,
    },
}

/// The runtime the agent runs on. Blocking work (container starts, deletes, waits) goes to a
/// small pool: each thread costs memory, and two cores gain nothing from more than a few
/// containers starting at once.
pub fn tokio_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores.clamp(1, 4))
        .max_blocking_threads(8)
        .enable_all()
        .build()
}

/// A client for the API server from a kubeconfig file.
pub async fn client(path: &std::path::Path) -> Result<kube::Client, AgentError> {
    let fail = |message: String| AgentError::Kubeconfig {
        path: path.to_path_buf(),
        message,
    };
    let kubeconfig = kube::config::Kubeconfig::read_from(path).map_err(|e| fail(e.to_string()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .map_err(|e| fail(e.to_string()))?;
    kube::Client::try_from(config).map_err(|e| fail(e.to_string()))
}

/// Runs the agent until its service fails.
pub async fn run(config: AgentConfig) -> Result<(), AgentError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = client(&config.kubeconfig).await?;
    let dirs = RuntimeDirs::new(
        &config.run_dir.join("runtime"),
        &config.root_dir.join("runtime"),
    );
    let runtime = Arc::new(Runtime::new(dirs, config.shim_binary.clone())?);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| AgentError::Serve {
            addr: config.listen,
            message: e.to_string(),
        })?;
    // The Node reports the port actually bound, so `listen` may ask for port 0.
    let mut status_config = config.clone();
    if let Ok(bound) = listener.local_addr() {
        status_config.listen = bound;
    }
    tokio::spawn(node_status::run(client.clone(), status_config));
    let images = Arc::new(ImageStore::open(config.root_dir.join("images"))?);
    let directory = Arc::new(Directory::default());
    let machine = node_status::machine::Machine::read(&config.root_dir);
    let allocatable: std::collections::BTreeMap<_, _> = machine
        .allocatable()
        .into_iter()
        .map(|(k, v)| {
            (
                k,
                k8s_openapi::apimachinery::pkg::api::resource::Quantity(v),
            )
        })
        .collect();
    let shared = Arc::new(Shared {
        config: config.clone(),
        client: client.clone(),
        runtime: runtime.clone(),
        images,
        objects: Arc::new(ApiSource::new(client.clone(), allocatable.clone())),
        events: Events::start(client.clone(), config.node_name.clone()),
        directory: directory.clone(),
        allocatable,
        dns: kubelet::sandbox::DnsSettings::host(),
        api_writes: tokio::sync::Semaphore::new(kubelet::API_WRITES),
        cpus: CpuManager::load(
            config.root_dir.join("cpu_manager_state"),
            CpuSet::of_this_process(),
            runtime.cgroups().clone(),
        ),
    });
    tokio::spawn(kubelet::run(shared));
    let service = AgentService::new(directory, runtime);
    tonic::transport::Server::builder()
        .add_service(skiff_proto::agent::agent_server::AgentServer::new(service))
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
        .await
        .map_err(|e| AgentError::Serve {
            addr: config.listen,
            message: e.to_string(),
        })
}
