//! `skiff sim`: hollow nodes (simulated node agents) against an API server, for scale tests
//! and benchmarks; see `skiff_node_agent::hollow`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use skiff_node_agent::hollow::{parse_memory_ki, HollowCluster, HollowConfig};

/// Flags of `skiff sim`.
#[derive(Args)]
pub struct SimArgs {
    /// Kubeconfig reaching the API server (a user that may register Nodes and write Leases,
    /// pod status and pods).
    #[arg(long)]
    kubeconfig: PathBuf,
    /// How many hollow nodes.
    #[arg(long)]
    nodes: usize,
    /// Node names are <prefix><index>.
    #[arg(long, default_value = "hollow-")]
    prefix: String,
    /// CPUs each node reports.
    #[arg(long, default_value_t = 4)]
    cpu: u64,
    /// Memory each node reports.
    #[arg(long, default_value = "16Gi")]
    memory: String,
    /// Pods each node takes.
    #[arg(long, default_value_t = 110)]
    pods: u64,
    /// A file naming nodes (one per line) that stop heartbeating, as dead agents do; re-read
    /// every second, so a test stops and resumes nodes by rewriting it.
    #[arg(long)]
    stop_file: Option<PathBuf>,
}

pub fn run(args: SimArgs) -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = HollowConfig {
        prefix: args.prefix,
        nodes: args.nodes,
        cpu: args.cpu,
        memory_ki: parse_memory_ki(&args.memory)?,
        max_pods: args.pods,
        ..Default::default()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting tokio")?;
    rt.block_on(async {
        let client = skiff_node_agent::agent::client(&args.kubeconfig).await?;
        let cluster = HollowCluster::start(client, &config)?;
        let follow = async {
            match &args.stop_file {
                Some(path) => cluster.follow_stop_file(path).await,
                None => std::future::pending().await,
            }
        };
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = follow => {}
            _ = tokio::signal::ctrl_c() => tracing::info!("interrupted; stopping"),
            _ = term.recv() => tracing::info!("terminated; stopping"),
        }
        Ok(())
    })
}
