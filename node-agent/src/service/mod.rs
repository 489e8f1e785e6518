//! The agent's gRPC service (`skiff.agent.v1.Agent`), which the API server calls for the pod
//! subresources that reach into a running pod: logs, exec, port-forward, and the stats behind
//! the metrics API.
//!
//! | module | job |
//! |---|---|
//! | [`logs`] | a container's CRI log files as `kubectl logs` asks for them (tail, since, follow, previous) |
//! | [`exec`] | a command in a running container, with stdin, output, TTY and resizes |
//! | [`portforward`] | TCP connections to ports on the pod's loopback |
//! | [`stats`] | CPU and memory of the node, pods and containers from their cgroups |

pub mod exec;
pub mod logs;
pub mod portforward;
pub mod stats;

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use skiff_proto::agent::agent_server::Agent;
use skiff_proto::agent::{
    ExecInput, ExecOutput, LogChunk, LogRequest, PortForwardInput, PortForwardOutput, StatsRequest,
    StatsResponse,
};
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

use crate::runtime::Runtime;

/// One container of a pod the node runs, as the service needs to find its process and logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerRef {
    /// Runtime id of the current (or last) instance; `None` when it never started.
    pub id: Option<String>,
    /// The container's CRI log directory: instance `n` (its restart count) logs to `<n>.log`.
    pub log_dir: PathBuf,
    /// Restart count of the current instance; the previous instance's log is `<n-1>.log`.
    pub attempt: u32,
}

/// One pod the node runs, for stats.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodRef {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Uid.
    pub uid: String,
    /// The pod's cgroup path (absolute, as in the OCI spec).
    pub cgroup_path: String,
    /// Its running containers: name and cgroup path.
    pub containers: Vec<(String, String)>,
}

/// What the service needs from the kubelet: where a pod's containers and namespaces are. The
/// API server sends the pod's uid; an empty uid matches the pod of that name.
pub trait PodDirectory: Send + Sync + 'static {
    /// A container of a pod this node runs.
    fn container(
        &self,
        namespace: &str,
        pod: &str,
        pod_uid: &str,
        container: &str,
    ) -> Option<ContainerRef>;
    /// The network namespace file of a pod this node runs.
    fn pod_netns(&self, namespace: &str, pod: &str, pod_uid: &str) -> Option<PathBuf>;
    /// Every pod this node runs.
    fn pods(&self) -> Vec<PodRef>;
}

/// The service: the kubelet's pod directory and the runtime it runs containers on.
#[derive(Clone)]
pub struct AgentService {
    pods: Arc<dyn PodDirectory>,
    runtime: Arc<Runtime>,
    stats: Arc<stats::Sampler>,
}

impl AgentService {
    /// A service over the kubelet's pods and runtime.
    pub fn new(pods: Arc<dyn PodDirectory>, runtime: Arc<Runtime>) -> Self {
        let stats = Arc::new(stats::Sampler::new(runtime.cgroups().clone()));
        AgentService {
            pods,
            runtime,
            stats,
        }
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl Agent for AgentService {
    type LogsStream = BoxStream<LogChunk>;
    type ExecStream = BoxStream<ExecOutput>;
    type PortForwardStream = BoxStream<PortForwardOutput>;

    async fn logs(
        &self,
        request: Request<LogRequest>,
    ) -> Result<Response<Self::LogsStream>, Status> {
        logs::serve(
            self.pods.as_ref(),
            self.runtime.clone(),
            request.into_inner(),
        )
        .await
        .map(Response::new)
    }

    async fn exec(
        &self,
        request: Request<Streaming<ExecInput>>,
    ) -> Result<Response<Self::ExecStream>, Status> {
        exec::serve(
            self.pods.clone(),
            self.runtime.clone(),
            request.into_inner(),
        )
        .await
        .map(Response::new)
    }

    async fn port_forward(
        &self,
        request: Request<Streaming<PortForwardInput>>,
    ) -> Result<Response<Self::PortForwardStream>, Status> {
        portforward::serve(self.pods.as_ref(), request.into_inner())
            .await
            .map(Response::new)
    }

    async fn stats(
        &self,
        _request: Request<StatsRequest>,
    ) -> Result<Response<StatsResponse>, Status> {
        Ok(Response::new(self.stats.sample(self.pods.as_ref())))
    }
}
