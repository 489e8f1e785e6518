//! `skiff controllers`: the scheduler and the controller manager as their own process, and the
//! same loops inside `skiff init`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;

/// Flags of `skiff controllers`.
#[derive(Args)]
pub struct ControllersArgs {
    /// Kubeconfig reaching the API server (e.g. the control plane's admin.conf).
    #[arg(long)]
    kubeconfig: PathBuf,
}

/// A name unique to this process: the host name and a random suffix, as upstream's
/// components name themselves in their Leases.
fn identity() -> String {
    format!(
        "{}_{:016x}",
        crate::store_cmd::hostname(),
        rand::random::<u64>()
    )
}

pub fn run(args: ControllersArgs) -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting tokio")?;
    rt.block_on(async {
        let client = client(&args.kubeconfig).await?;
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = skiff_controllers::run(client, identity()) => {}
            _ = tokio::signal::ctrl_c() => tracing::info!("interrupted; stopping"),
            _ = term.recv() => tracing::info!("terminated; stopping"),
        }
        Ok(())
    })
}

/// `init`'s own scheduler and controllers, with the admin's kubeconfig once it is written. A
/// failure is logged and leaves the API server serving.
pub async fn run_in_process(kubeconfig: PathBuf) {
    match client(&kubeconfig).await {
        Ok(client) => skiff_controllers::run(client, identity()).await,
        Err(e) => tracing::error!("the scheduler and controllers did not start: {e:#}"),
    }
}

async fn client(kubeconfig: &Path) -> Result<kube::Client> {
    // The CA the kubeconfig trusts is the one the root CA publisher hands to every namespace.
    if let Err(e) =
        skiff_controllers::manager::serviceaccounts::set_root_ca_from_kubeconfig(kubeconfig)
    {
        tracing::warn!("kube-root-ca.crt ConfigMaps will not be published: {e}");
    }
    Ok(skiff_node_agent::agent::client(kubeconfig).await?)
}
