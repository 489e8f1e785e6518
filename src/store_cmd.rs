//! `skiff store` and `skiff init`: run a store member, save and restore snapshots; `init` also
//! runs the API server and, as root, the node agent for its own machine.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use skiff_control_plane::apiserver::{self, ApiServerConfig, TokenFile};
use skiff_control_plane::pki::{self, PkiPaths};
use skiff_control_plane::store::{self, api, ClusterState, Store, StoreConfig};
use skiff_node_agent::agent::{self, AgentConfig};
use skiff_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use skiff_proto::etcdserverpb::SnapshotRequest;

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct StoreArgs {
    #[command(subcommand)]
    command: Option<StoreCommand>,
    #[command(flatten)]
    member: MemberArgs,
}

#[derive(Subcommand)]
enum StoreCommand {
    /// Save or restore a snapshot, like `etcdctl snapshot`.
    Snapshot {
        #[command(subcommand)]
        command: SnapshotCommand,
    },
}

#[derive(Subcommand)]
enum SnapshotCommand {
    /// Stream a consistent snapshot from a running member into FILE.
    Save {
        file: PathBuf,
        /// Client URL of the member to take it from.
        #[arg(long, default_value = "http://127.0.0.1:2379")]
        endpoints: String,
    },
    /// Seed a fresh data directory from FILE, as a member of a new cluster.
    Restore {
        file: PathBuf,
        #[command(flatten)]
        member: MemberArgs,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum StateArg {
    New,
    Existing,
}

/// Flags naming one member, shared by `store` and `store snapshot restore`.
#[derive(Args, Clone)]
pub struct MemberArgs {
    /// Human-readable member name, unique in the cluster.
    #[arg(long, default_value = "default")]
    name: String,
    /// Where the member keeps its log and state.
    #[arg(long, default_value = "default.skiff")]
    data_dir: PathBuf,
    /// URL to serve the etcd-compatible client API on.
    #[arg(long, default_value = "http://127.0.0.1:2379")]
    listen_client: String,
    /// URL to serve member-to-member traffic on.
    #[arg(long, default_value = "http://127.0.0.1:2380")]
    listen_peer: String,
    /// Initial members as NAME=PEER_URL,... (defaults to just this member).
    #[arg(long)]
    initial_cluster: Option<String>,
    /// `new` to bootstrap a cluster, `existing` to join one (after `member add`).
    #[arg(long, value_enum, default_value = "new")]
    initial_cluster_state: StateArg,
    /// Token that keeps member ids of different clusters apart.
    #[arg(long, default_value = "skiff-cluster")]
    initial_cluster_token: String,
    /// Applied entries between durable checkpoints and log compactions.
    #[arg(long, default_value_t = 10_000)]
    snapshot_count: u64,
    /// Largest request accepted, in bytes.
    #[arg(long, default_value_t = store::DEFAULT_MAX_REQUEST_BYTES)]
    max_request_bytes: usize,
}

impl MemberArgs {
    fn config(&self) -> Result<StoreConfig> {
        let initial_cluster = match &self.initial_cluster {
            None => vec![(self.name.clone(), self.listen_peer.clone())],
            Some(list) => list
                .split(',')
                .map(|item| {
                    let (name, url) = item.split_once('=').ok_or_else(|| {
                        anyhow!("--initial-cluster entry {item:?} is not NAME=URL (e.g. m1=http://10.0.0.1:2380)")
                    })?;
                    Ok((name.trim().to_string(), url.trim().to_string()))
                })
                .collect::<Result<Vec<_>>>()?,
        };
        Ok(StoreConfig {
            name: self.name.clone(),
            data_dir: self.data_dir.clone(),
            peer_url: self.listen_peer.clone(),
            client_url: self.listen_client.clone(),
            initial_cluster,
            state: match self.initial_cluster_state {
                StateArg::New => ClusterState::New,
                StateArg::Existing => ClusterState::Existing,
            },
            cluster_token: self.initial_cluster_token.clone(),
            snapshot_count: self.snapshot_count,
            max_request_bytes: self.max_request_bytes,
        })
    }
}

/// `skiff init`: a single-member control plane in a well-known place.
#[derive(Args)]
pub struct InitArgs {
    /// Where the control plane keeps its state.
    #[arg(long, default_value = "/var/lib/skiff")]
    data_dir: PathBuf,
    /// Address to serve the store's etcd-compatible API on.
    #[arg(long, default_value = "127.0.0.1:2379")]
    store_listen: String,
    /// Address the store listens on for its peers.
    #[arg(long, default_value = "127.0.0.1:2380")]
    store_peer_listen: String,
    /// Address to serve the Kubernetes API (HTTPS) on.
    #[arg(long, default_value = "0.0.0.0:6443")]
    apiserver_listen: SocketAddr,
    /// Address clients reach the API server at; goes into admin.conf and the serving
    /// certificate. Defaults to the listen address, or 127.0.0.1 when that is unspecified.
    #[arg(long)]
    advertise_address: Option<std::net::IpAddr>,
    /// Static bearer tokens for the API server, one `token,user,uid[,"group1,group2"]` per line.
    #[arg(long)]
    token_auth_file: Option<PathBuf>,
    /// This machine's Node name; defaults to the host name, as kubeadm's does.
    #[arg(long)]
    node_name: Option<String>,
    /// Address of the node agent's gRPC service (the kubelet port); defaults to the advertise
    /// address, port 10250. Port 0 picks a free port.
    #[arg(long)]
    agent_listen: Option<SocketAddr>,
    /// Leave the scheduler and the controllers to `skiff controllers` processes elsewhere
    /// instead of running them here.
    #[arg(long)]
    no_controllers: bool,
    /// Control-plane members bootstrapping together, as NODE_NAME=STORE_PEER_URL,... (this one
    /// included). Each member starts with a copy of the first one's pki/ca.crt, ca.key, sa.key
    /// and sa.pub. Defaults to this member alone.
    #[arg(long)]
    initial_cluster: Option<String>,
}

pub fn init(args: InitArgs) -> Result<()> {
    let node_name = crate::agent_cmd::node_name(args.node_name)?;
    let member = MemberArgs {
        name: node_name.clone(),
        data_dir: args.data_dir.join("store"),
        listen_client: format!("http://{}", args.store_listen),
        listen_peer: format!("http://{}", args.store_peer_listen),
        initial_cluster: args.initial_cluster,
        initial_cluster_state: StateArg::New,
        initial_cluster_token: "skiff-cluster".into(),
        snapshot_count: 10_000,
        max_request_bytes: store::DEFAULT_MAX_REQUEST_BYTES,
    };
    let listen_ip = args.apiserver_listen.ip();
    let advertise = args
        .advertise_address
        .unwrap_or(if listen_ip.is_unspecified() {
            std::net::IpAddr::from([127, 0, 0, 1])
        } else {
            listen_ip
        });
    let server = SocketAddr::new(advertise, args.apiserver_listen.port());
    let pki = PkiPaths::new(&args.data_dir);
    let mut sans = vec![
        advertise.to_string(),
        "127.0.0.1".into(),
        "localhost".into(),
        "kubernetes".into(),
        "kubernetes.default".into(),
        "kubernetes.default.svc".into(),
        "kubernetes.default.svc.cluster.local".into(),
    ];
    let host = hostname();
    if pki::is_dns_name(&host) {
        sans.push(host);
    }
    pki::ensure(&pki, &sans).context("creating the cluster certificates")?;
    let node_agent = if crate::agent_cmd::is_root() {
        pki::ensure_node(&pki, &node_name).context("creating the node's client certificate")?;
        Some(AgentConfig {
            kubeconfig: args.data_dir.join("kubelet.conf"),
            root_dir: args.data_dir.join("agent"),
            run_dir: PathBuf::from("/run/skiff").join(&node_name),
            log_dir: PathBuf::from("/var/log/pods"),
            listen: args
                .agent_listen
                .unwrap_or(SocketAddr::new(advertise, 10250)),
            node_ip: advertise,
            shim_binary: std::env::current_exe().context("finding this binary, the shim")?,
            cgroup_root: format!("/skiff/{node_name}"),
            node_name,
        })
    } else {
        eprintln!(
            "warning: not running as root, so the node agent was NOT started: this machine runs \
             the control plane only and no pods will run on it. Run skiff init as root to make \
             it a node too."
        );
        None
    };
    let kubeconfig = args.data_dir.join("admin.conf");
    let tokens = match &args.token_auth_file {
        Some(path) => TokenFile::load(path).map_err(|e| anyhow!("--token-auth-file: {e}"))?,
        None => TokenFile::default(),
    };
    let api = ApiServerConfig {
        listen: args.apiserver_listen,
        advertise: server.to_string(),
        pki,
        tokens,
    };
    let node_line = match &node_agent {
        Some(a) => format!(
            "  kubectl --kubeconfig {} get nodes    (this machine is node {})\n",
            kubeconfig.display(),
            a.node_name
        ),
        None => String::new(),
    };
    eprintln!(
        "skiff control plane starting; state in {dir}.\n\
         Use it with:\n  kubectl --kubeconfig {conf} version\n{node_line}  \
         ETCDCTL_API=3 etcdctl --endpoints={store} member list",
        dir = args.data_dir.display(),
        conf = kubeconfig.display(),
        store = args.store_listen,
    );
    serve_with_api(
        member.config()?,
        Some(Init {
            api,
            kubeconfig,
            agent: node_agent,
            controllers: !args.no_controllers,
        }),
    )
}

/// The host's name, the default name of its store member and Node.
pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "default".into())
}

pub fn run(args: StoreArgs) -> Result<()> {
    match args.command {
        None => serve(args.member.config()?),
        Some(StoreCommand::Snapshot {
            command: SnapshotCommand::Save { file, endpoints },
        }) => save(&file, &endpoints),
        Some(StoreCommand::Snapshot {
            command: SnapshotCommand::Restore { file, member },
        }) => {
            let data =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let cfg = member.config()?;
            let rev = store::restore(&cfg, &data)?;
            println!(
                "Restored revision {rev} into {}; start the member with the same flags.",
                cfg.data_dir.display()
            );
            Ok(())
        }
    }
}

fn socket_addr(url: &str, flag: &str) -> Result<SocketAddr> {
    let hostport = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow!("{flag} {url:?} must start with http://"))?;
    hostport.trim_end_matches('/').parse().with_context(|| {
        format!("{flag} {url:?} must be http://IP:PORT, e.g. http://127.0.0.1:2379")
    })
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting tokio")
}

fn serve(cfg: StoreConfig) -> Result<()> {
    serve_with_api(cfg, None)
}

/// What `init` runs besides the store member.
struct Init {
    api: ApiServerConfig,
    /// The admin kubeconfig, written once the API server listens.
    kubeconfig: PathBuf,
    /// The node agent for this machine (root only); its kubeconfig is written with the admin's.
    agent: Option<AgentConfig>,
    /// Whether the scheduler and the controllers run in this process.
    controllers: bool,
}

/// Runs a store member and, for `init`, the API server in front of it (writing the admin
/// kubeconfig once it listens) and the node agent.
fn serve_with_api(cfg: StoreConfig, init: Option<Init>) -> Result<()> {
    let client_addr = socket_addr(&cfg.client_url, "--listen-client")?;
    let peer_addr = socket_addr(&cfg.peer_url, "--listen-peer")?;
    runtime()?.block_on(async move {
        let client = tokio::net::TcpListener::bind(client_addr)
            .await
            .with_context(|| format!("cannot listen for clients on {client_addr}"))?;
        let peer = tokio::net::TcpListener::bind(peer_addr)
            .await
            .with_context(|| format!("cannot listen for peers on {peer_addr}"))?;
        let store = Store::start(cfg).await?;
        let client_srv = api::client_services(&store)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(client));
        let peer_srv = api::peer_services(&store)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(peer));
        let api_store = store.clone();
        let api_srv = async move {
            let Some(Init {
                api,
                kubeconfig,
                agent,
                controllers,
            }) = init
            else {
                return std::future::pending::<Result<()>>().await;
            };
            let listener = apiserver::bind(&api).await?;
            let server = format!("https://{}", api.advertise);
            if let Some(agent) = agent {
                // Before admin.conf, so whoever waits for that finds this too.
                pki::write_node_kubeconfig(&api.pki, &agent.node_name, &server, &agent.kubeconfig)?;
                tokio::spawn(run_node_agent(agent));
            }
            pki::write_admin_kubeconfig(&api.pki, &server, &kubeconfig)?;
            if controllers {
                tokio::spawn(crate::controllers_cmd::run_in_process(kubeconfig.clone()));
            }
            apiserver::serve(api, listener, api_store).await?;
            Ok(())
        };
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = api_srv => r.context("API server failed")?,
            r = client_srv => r.context("client server failed")?,
            r = peer_srv => r.context("peer server failed")?,
            _ = tokio::signal::ctrl_c() => tracing::info!("interrupted; stopping"),
            _ = term.recv() => tracing::info!("terminated; stopping"),
        }
        Ok(())
    })
}

/// Runs `init`'s node agent. Its failure leaves the control plane serving, as a kubelet's does
/// under kubeadm, but is logged loudly.
async fn run_node_agent(config: AgentConfig) {
    let node = config.node_name.clone();
    tracing::info!(node = %node, listen = %config.listen, "starting the node agent");
    if let Err(e) = agent::run(config).await {
        tracing::error!(node = %node, error = %e, "the node agent stopped; this machine runs no pods");
    }
}

fn save(file: &PathBuf, endpoints: &str) -> Result<()> {
    use std::io::Write;
    let endpoint = endpoints.split(',').next().unwrap_or_default().to_string();
    runtime()?.block_on(async move {
        let channel = tonic::transport::Endpoint::from_shared(endpoint.clone())
            .with_context(|| format!("bad endpoint {endpoint:?}"))?
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .with_context(|| format!("cannot reach {endpoint}"))?;
        let mut client = MaintenanceClient::new(channel).max_decoding_message_size(usize::MAX);
        let mut stream = client.snapshot(SnapshotRequest {}).await?.into_inner();
        let part = file.with_extension("part");
        let mut out =
            std::fs::File::create(&part).with_context(|| format!("creating {}", part.display()))?;
        let mut total = 0usize;
        while let Some(chunk) = stream.message().await? {
            out.write_all(&chunk.blob)?;
            total += chunk.blob.len();
        }
        if total == 0 {
            bail!("the member sent an empty snapshot");
        }
        out.sync_all()?;
        std::fs::rename(&part, file)?;
        println!("Snapshot saved at {}", file.display());
        Ok(())
    })
}
