//! `skiff agent`: the node agent on its own, joining a cluster through a kubeconfig.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use skiff_node_agent::agent::{self, AgentConfig};
use skiff_node_agent::kubelet::node_status::node_ip;

/// `skiff agent` flags.
#[derive(Args)]
pub struct AgentArgs {
    /// How to reach the API server, and as whom (e.g. a node's kubelet.conf).
    #[arg(long)]
    kubeconfig: PathBuf,
    /// The Node's name; defaults to this host's name.
    #[arg(long)]
    node_name: Option<String>,
    /// The address the Node reports (InternalIP); defaults to the source address towards the
    /// API server.
    #[arg(long)]
    node_ip: Option<IpAddr>,
    /// Address of the agent's gRPC service, which the API server calls for logs, exec and
    /// port-forward. Port 0 picks a free port.
    #[arg(long, default_value = "0.0.0.0:10250")]
    listen: SocketAddr,
    /// Persistent state: containers' writable layers, pod volumes.
    #[arg(long, default_value = "/var/lib/skiff/agent")]
    root_dir: PathBuf,
    /// State that must not survive a reboot (a tmpfs).
    #[arg(long, default_value = "/run/skiff/agent")]
    run_dir: PathBuf,
    /// Where containers' logs go.
    #[arg(long, default_value = "/var/log/pods")]
    log_dir: PathBuf,
    /// The cgroup under which pods' cgroups are made.
    #[arg(long, default_value = "/skiff")]
    cgroup_root: String,
}

/// Whether this process may mount, make cgroups and run containers.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The node name a host gets by default: its host name, lowercased (as kubeadm and the kubelet
/// do), and checked to be usable as an object name.
pub fn node_name(flag: Option<String>) -> Result<String> {
    let name = flag.unwrap_or_else(|| crate::store_cmd::hostname().to_lowercase());
    if !skiff_control_plane::pki::is_dns_name(&name) || name.len() > 63 {
        bail!(
            "node name {name:?} is not a valid DNS name of at most 63 characters \
             (lowercase letters, digits, '-' and '.'); set one with --node-name"
        );
    }
    if name.chars().any(|c| c.is_ascii_uppercase()) {
        bail!("node name {name:?} must be lowercase; set one with --node-name");
    }
    Ok(name)
}

/// Runs `skiff agent` until it fails or is stopped.
pub fn run(args: AgentArgs) -> Result<()> {
    if !is_root() {
        bail!(
            "skiff agent must run as root: it mounts container filesystems, makes cgroups and \
             runs containers (try sudo)"
        );
    }
    let node_name = node_name(args.node_name)?;
    if !args.kubeconfig.exists() {
        bail!(
            "--kubeconfig {}: no such file (on a control-plane host, skiff init writes \
             <data-dir>/kubelet.conf and admin.conf)",
            args.kubeconfig.display()
        );
    }
    let node_ip = args
        .node_ip
        .unwrap_or_else(|| node_ip::towards_api_server(&args.kubeconfig));
    let config = AgentConfig {
        node_name,
        kubeconfig: args.kubeconfig,
        root_dir: args.root_dir,
        run_dir: args.run_dir,
        log_dir: args.log_dir,
        listen: args.listen,
        node_ip,
        shim_binary: std::env::current_exe().context("finding this binary, the shim")?,
        cgroup_root: args.cgroup_root,
    };
    eprintln!(
        "skiff agent starting as node {} ({node_ip}); service on {}",
        config.node_name, config.listen
    );
    let runtime = agent::tokio_runtime().context("starting tokio")?;
    runtime.block_on(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = agent::run(config) => r.context("the node agent failed")?,
            _ = tokio::signal::ctrl_c() => tracing::info!("interrupted; stopping"),
            _ = term.recv() => tracing::info!("terminated; stopping"),
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_must_be_lowercase_dns_names_within_a_label_value() {
        assert_eq!(
            node_name(Some("worker-1.lab".into())).ok(),
            Some("worker-1.lab".into())
        );
        for bad in ["Worker", "under_score", "", &"n".repeat(64)] {
            let err = node_name(Some(bad.to_string()))
                .err()
                .map(|e| e.to_string());
            assert!(
                err.as_deref().is_some_and(|e| e.contains("--node-name")),
                "{bad:?}: {err:?}"
            );
        }
        let host = node_name(None).map_err(|e| e.to_string());
        let expected = crate::store_cmd::hostname().to_lowercase();
        if pki_ok(&expected) {
            assert_eq!(host, Ok(expected), "the host name by default");
        }
    }

    fn pki_ok(name: &str) -> bool {
        skiff_control_plane::pki::is_dns_name(name) && name.len() <= 63
    }
}
