//! `skiff bench pods`: pod start latency on one node, from the pod's creation already bound to
//! the node (`spec.nodeName`) to the watch event that shows it Running, for N pods created
//! back to back; and the node agent's resident memory once they all run.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, PostParams, WatchEvent, WatchParams};

#[derive(Args)]
pub struct PodsBench {
    /// kubeconfig of a user that may create and watch pods.
    #[arg(long)]
    kubeconfig: std::path::PathBuf,
    /// The node the pods are bound to.
    #[arg(long)]
    node: String,
    /// How many pods.
    #[arg(long, default_value_t = 100)]
    pods: usize,
    /// The image (must be on the node already: the pods use imagePullPolicy Never).
    #[arg(long)]
    image: String,
    /// The node agent's pid, to report its resident memory with every pod running.
    #[arg(long)]
    agent_pid: Option<u32>,
    /// Pods created per second (0: all at once, which measures queueing as much as start-up).
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    /// Seconds to wait for every pod to run.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
}

pub fn run(b: PodsBench) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(bench(b))
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// Resident memory of a process: total, anonymous (heap and stacks) and file-backed (mostly the
/// binary's code), in MB, and its thread count.
struct Rss {
    total: f64,
    anon: f64,
    file: f64,
    threads: u64,
}

impl std::fmt::Display for Rss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.1} MB ({:.1} MB anonymous, {:.1} MB file-backed), {} threads",
            self.total, self.anon, self.file, self.threads
        )
    }
}

fn rss_mb(pid: u32) -> Option<Rss> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<f64> {
        status
            .lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    Some(Rss {
        total: field("VmRSS:")? / 1024.0,
        anon: field("RssAnon:")? / 1024.0,
        file: field("RssFile:")? / 1024.0,
        threads: field("Threads:")? as u64,
    })
}

async fn bench(b: PodsBench) -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = skiff_node_agent::agent::client(&b.kubeconfig).await?;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let run_id = format!("{:x}", std::process::id());
    let selector = format!("skiff-bench={run_id}");
    // Watch first, so no transition is missed; the first Running event of each pod is timed
    // as it arrives, while pods are still being created.
    let mut watch = pods
        .watch(&WatchParams::default().labels(&selector).timeout(290), "0")
        .await
        .context("watching pods")?
        .boxed();
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel::<(String, Instant)>();
    tokio::spawn(async move {
        while let Some(Ok(event)) = watch.next().await {
            let pod = match event {
                WatchEvent::Added(p) | WatchEvent::Modified(p) => p,
                _ => continue,
            };
            if pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") {
                let name = pod.metadata.name.unwrap_or_default();
                if seen_tx.send((name, Instant::now())).is_err() {
                    return;
                }
            }
        }
    });
    let idle_rss = b.agent_pid.and_then(rss_mb);
    let mut created: HashMap<String, Instant> = HashMap::new();
    let mut latencies: Vec<f64> = Vec::new();
    let started = Instant::now();
    for i in 0..b.pods {
        let name = format!("bench-{run_id}-{i}");
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": {"skiff-bench": run_id}},
            "spec": {
                "nodeName": b.node,
                "terminationGracePeriodSeconds": 0,
                "containers": [{
                    "name": "main",
                    "image": b.image,
                    "imagePullPolicy": "Never",
                    "command": ["sleep", "3600"],
                }],
            },
        }))?;
        if b.rate > 0.0 {
            let due = started + Duration::from_secs_f64(i as f64 / b.rate);
            tokio::time::sleep_until(due.into()).await;
        }
        let t = Instant::now();
        pods.create(&PostParams::default(), &pod)
            .await
            .with_context(|| format!("creating {name}"))?;
        created.insert(name, t);
    }
    let created_all = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(b.timeout);
    while latencies.len() < b.pods {
        let next = tokio::time::timeout_at(deadline.into(), seen_rx.recv()).await;
        let Ok(Some((name, at))) = next else {
            bail!(
                "only {} of {} pods ran within {} s",
                latencies.len(),
                b.pods,
                b.timeout
            );
        };
        if let Some(t) = created.remove(&name) {
            latencies.push(at.saturating_duration_since(t).as_secs_f64() * 1000.0);
        }
    }
    let all_running = started.elapsed();
    latencies.sort_by(|a, b| a.total_cmp(b));
    println!(
        "== {} pods on node {} at {}/s (created in {:.2} s, all Running after {:.2} s)",
        b.pods,
        b.node,
        b.rate,
        created_all.as_secs_f64(),
        all_running.as_secs_f64()
    );
    println!(
        "pod start (create bound -> Running seen): p50 {:.1} ms p99 {:.1} ms max {:.1} ms (goal p50 <= 150 ms, p99 <= 500 ms)",
        pct(&latencies, 0.50),
        pct(&latencies, 0.99),
        latencies.last().copied().unwrap_or(0.0)
    );
    if let Some(pid) = b.agent_pid {
        match rss_mb(pid) {
            Some(rss) => println!(
                "agent RSS with {} pods running: {rss} (goal <= 40 MB); before the pods: {}",
                b.pods,
                idle_rss.map_or("unknown".into(), |r| r.to_string())
            ),
            None => println!("agent RSS: pid {pid} not readable"),
        }
    }
    // Clean up: delete the pods and wait until the agent has removed them.
    let dp = DeleteParams {
        grace_period_seconds: Some(0),
        ..Default::default()
    };
    pods.delete_collection(&dp, &ListParams::default().labels(&selector))
        .await
        .context("deleting the pods")?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while !pods
        .list(&ListParams::default().labels(&selector))
        .await?
        .items
        .is_empty()
    {
        if Instant::now() > deadline {
            bail!("pods still exist two minutes after deletion");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}
