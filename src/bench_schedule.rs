//! `skiff bench schedule`: scheduling throughput at scale, against a running `skiff init`
//! (deploy/bench/schedule.sh starts one). N hollow nodes run in this process; pods are
//! created both through Deployments and directly (many concurrent creates over HTTP/2); a
//! watch times each pod's bind and its Running. Reports pods bound per second (overall and
//! steady state), create-to-Running p50/p99, the creates' client-side latency, and the control
//! plane's memory, next to upstream's scheduler_perf anchor.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use futures::StreamExt;
use hyper::Method;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use skiff_node_agent::hollow::{parse_memory_ki, HollowCluster, HollowConfig};

/// Flags of `skiff bench schedule`.
#[derive(Args)]
pub struct ScheduleBench {
    /// The API server, host:port.
    #[arg(long, default_value = "127.0.0.1:6443")]
    server: String,
    /// The `skiff init` data directory (admin.conf, pki/).
    #[arg(long)]
    data_dir: std::path::PathBuf,
    /// `skiff init`'s pid, for its memory.
    #[arg(long)]
    init_pid: Option<u32>,
    /// Hollow nodes.
    #[arg(long, default_value_t = 5000)]
    nodes: usize,
    /// Pods in all.
    #[arg(long, default_value_t = 30_000)]
    pods: usize,
    /// The share of pods created through Deployments (the rest are created directly).
    #[arg(long, default_value_t = 0.5)]
    deployment_share: f64,
    /// Deployments the Deployment share is split over.
    #[arg(long, default_value_t = 10)]
    deployments: usize,
    /// Direct creates in flight at once.
    #[arg(long, default_value_t = 128)]
    concurrency: usize,
    /// HTTP/2 connections the direct creates share.
    #[arg(long, default_value_t = 4)]
    conns: usize,
    /// CPUs per hollow node.
    #[arg(long, default_value_t = 4)]
    cpu: u64,
    /// Memory per hollow node.
    #[arg(long, default_value = "16Gi")]
    memory: String,
    /// Pods per hollow node.
    #[arg(long, default_value_t = 110)]
    max_pods: u64,
    /// Seconds to wait for every pod to be bound and Running.
    #[arg(long, default_value_t = 900)]
    timeout: u64,
}

/// Upstream's anchor: kube-scheduler's scheduler_perf SchedulingBasic at 5,000 nodes and
/// 10,000 pods, as published in its performance dashboards.
const ANCHOR: &str =
    "upstream kube-scheduler scheduler_perf: ~680 pods/s at 5,000 nodes / 10,000 pods";

const NS: &str = "sched-bench";

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn proc_status_mb(pid: u32, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

fn self_rss_mb() -> Option<f64> {
    proc_status_mb(std::process::id(), "VmRSS:")
}

/// What the watch saw of one pod.
#[derive(Default, Clone, Copy)]
struct Seen {
    added: Option<Instant>,
    bound: Option<Instant>,
    running: Option<Instant>,
}

pub fn run(b: ScheduleBench) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(bench(b))
}

fn pod_template(run: &str, app: &str) -> serde_json::Value {
    serde_json::json!({
        "metadata": {"labels": {"skiff-bench": run, "app": app}},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "containers": [{
                "name": "c",
                "image": "registry.k8s.io/pause:3.10",
                "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
            }],
        },
    })
}

async fn bench(b: ScheduleBench) -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let kubeconfig = b.data_dir.join("admin.conf");
    let client = skiff_node_agent::agent::client(&kubeconfig).await?;
    let run_id = format!("{:x}", std::process::id());
    let rss_before = b.init_pid.and_then(|p| proc_status_mb(p, "VmRSS:"));

    // 1. Hollow nodes, all registered and Ready.
    let config = HollowConfig {
        prefix: format!("hollow-{run_id}-"),
        nodes: b.nodes,
        cpu: b.cpu,
        memory_ki: parse_memory_ki(&b.memory)?,
        max_pods: b.max_pods,
        ..Default::default()
    };
    let t = Instant::now();
    let cluster = HollowCluster::start(client.clone(), &config)?;
    let nodes: Api<Node> = Api::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if cluster.stats().registered == b.nodes {
            let list = nodes.list_metadata(&ListParams::default()).await?;
            let ours = list
                .items
                .iter()
                .filter(|n| {
                    n.metadata
                        .name
                        .as_deref()
                        .is_some_and(|s| s.starts_with(&config.prefix))
                })
                .count();
            if ours == b.nodes {
                break;
            }
        }
        if Instant::now() > deadline {
            bail!(
                "only {} of {} hollow nodes registered in 300 s",
                cluster.stats().registered,
                b.nodes
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let registered_in = t.elapsed();
    // Other nodes (as root, `skiff init` runs a real agent) are cordoned, so every pod lands
    // on a hollow node.
    for n in nodes.list_metadata(&ListParams::default()).await?.items {
        let Some(name) = n.metadata.name else {
            continue;
        };
        if !name.starts_with(&config.prefix) {
            let patch = serde_json::json!({"spec": {"unschedulable": true}});
            nodes
                .patch(
                    &name,
                    &kube::api::PatchParams::default(),
                    &kube::api::Patch::Merge(&patch),
                )
                .await
                .with_context(|| format!("cordoning {name}"))?;
            println!("cordoned {name}: pods go to hollow nodes only");
        }
    }
    let rss_nodes = b.init_pid.and_then(|p| proc_status_mb(p, "VmRSS:"));
    println!(
        "== {} hollow nodes registered in {:.1} s; control plane RSS {:.0} MB before, {:.0} MB with the nodes; this process (hollow nodes + bench) {:.0} MB",
        b.nodes,
        registered_in.as_secs_f64(),
        rss_before.unwrap_or(0.0),
        rss_nodes.unwrap_or(0.0),
        self_rss_mb().unwrap_or(0.0)
    );

    // 2. A namespace, and a watch over the run's pods from now on.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": NS}}))?;
    match namespaces.create(&PostParams::default(), &ns).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => return Err(e).context("creating the namespace"),
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let rv = pods
        .list_metadata(&ListParams::default().limit(1))
        .await?
        .metadata
        .resource_version
        .unwrap_or_else(|| "0".into());
    let seen: Arc<Mutex<HashMap<String, Seen>>> = Arc::default();
    let watcher = {
        let seen = seen.clone();
        let pods = pods.clone();
        let selector = format!("skiff-bench={run_id}");
        tokio::spawn(async move {
            let mut rv = rv;
            loop {
                let wp = WatchParams::default().labels(&selector).timeout(290);
                let Ok(stream) = pods.watch(&wp, &rv).await else {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                };
                let mut stream = stream.boxed();
                while let Some(Ok(event)) = stream.next().await {
                    let now = Instant::now();
                    let pod = match event {
                        WatchEvent::Added(p) | WatchEvent::Modified(p) => p,
                        WatchEvent::Bookmark(bm) => {
                            rv = bm.metadata.resource_version;
                            continue;
                        }
                        _ => continue,
                    };
                    if let Some(v) = pod.metadata.resource_version.clone() {
                        rv = v;
                    }
                    let Some(name) = pod.metadata.name.clone() else {
                        continue;
                    };
                    let bound = pod
                        .spec
                        .as_ref()
                        .and_then(|s| s.node_name.as_ref())
                        .is_some();
                    let running =
                        pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
                    let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
                    let s = seen.entry(name).or_default();
                    s.added.get_or_insert(now);
                    if bound {
                        s.bound.get_or_insert(now);
                    }
                    if running {
                        s.running.get_or_insert(now);
                    }
                }
            }
        })
    };

    // 3. Deployments and direct pods at once.
    let started = Instant::now();
    let through_deployments = ((b.pods as f64) * b.deployment_share.clamp(0.0, 1.0)) as usize;
    let direct = b.pods - through_deployments;
    let deployments = b.deployments.max(1);
    let deploy_api: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), NS);
    let mut deploy_lat = Vec::new();
    for d in 0..deployments {
        let replicas =
            through_deployments / deployments + usize::from(d < through_deployments % deployments);
        if replicas == 0 {
            continue;
        }
        let app = format!("d{d}");
        let dep: k8s_openapi::api::apps::v1::Deployment =
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": format!("bench-{run_id}-{d}")},
                "spec": {
                    "replicas": replicas,
                    "selector": {"matchLabels": {"skiff-bench": run_id, "app": app}},
                    "template": pod_template(&run_id, &app),
                },
            }))?;
        let t = Instant::now();
        deploy_api
            .create(&PostParams::default(), &dep)
            .await
            .context("creating a Deployment")?;
        deploy_lat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let tls = Arc::new(crate::bench_api::tls_config(&b.data_dir)?);
    let mut conns = Vec::new();
    for _ in 0..b.conns.max(1) {
        conns.push(crate::bench_api::connect(&b.server, tls.clone()).await?);
    }
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = Vec::new();
    for w in 0..b.concurrency.max(1) {
        let conn = conns[w % conns.len()].clone();
        let (next, sent, run_id) = (next.clone(), sent.clone(), run_id.clone());
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0usize;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= direct {
                    break;
                }
                let name = format!("bench-{run_id}-p{i}");
                let mut body = pod_template(&run_id, "direct");
                body["apiVersion"] = "v1".into();
                body["kind"] = "Pod".into();
                body["metadata"]["name"] = name.clone().into();
                let t = Instant::now();
                sent.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(name, t);
                match conn
                    .call(
                        Method::POST,
                        &format!("/api/v1/namespaces/{NS}/pods"),
                        "application/json",
                        body.to_string(),
                    )
                    .await
                {
                    Ok(_) => lat.push(t.elapsed().as_secs_f64() * 1000.0),
                    Err(_) => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    let mut create_lat = Vec::new();
    let mut create_errors = 0;
    for w in workers {
        let (lat, e) = w.await?;
        create_lat.extend(lat);
        create_errors += e;
    }
    let created_in = started.elapsed();

    // 4. Until every pod is bound and Running.
    let deadline = Instant::now() + Duration::from_secs(b.timeout);
    let mut last_report = Instant::now();
    loop {
        let (bound, running) = {
            let seen = seen.lock().unwrap_or_else(|e| e.into_inner());
            (
                seen.values().filter(|s| s.bound.is_some()).count(),
                seen.values().filter(|s| s.running.is_some()).count(),
            )
        };
        if running >= b.pods && bound >= b.pods {
            break;
        }
        if last_report.elapsed() >= Duration::from_secs(10) {
            eprintln!(
                "  {:.0} s: {bound} bound, {running} running of {}",
                started.elapsed().as_secs_f64(),
                b.pods
            );
            last_report = Instant::now();
        }
        if Instant::now() > deadline {
            bail!(
                "after {} s only {bound} pods bound and {running} Running of {}",
                b.timeout,
                b.pods
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    watcher.abort();

    // 5. Figures.
    let seen = seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let sent = sent.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let created_at = |name: &str, s: &Seen| -> Option<Instant> {
        match (sent.get(name), s.added) {
            (Some(a), Some(b)) => Some((*a).min(b)),
            (a, b) => a.copied().or(b),
        }
    };
    let mut binds: Vec<Instant> = seen.values().filter_map(|s| s.bound).collect();
    binds.sort();
    let mut to_running: Vec<f64> = seen
        .iter()
        .filter_map(|(n, s)| {
            Some(
                s.running?
                    .saturating_duration_since(created_at(n, s)?)
                    .as_secs_f64()
                    * 1000.0,
            )
        })
        .collect();
    to_running.sort_by(|a, b| a.total_cmp(b));
    create_lat.sort_by(|a, b| a.total_cmp(b));
    let first = started;
    let last_bind = binds.last().copied().unwrap_or(first);
    let overall = binds.len() as f64
        / last_bind
            .saturating_duration_since(first)
            .as_secs_f64()
            .max(1e-3);
    let (lo, hi) = (binds.len() / 10, binds.len() * 9 / 10);
    let steady = match (binds.get(lo), binds.get(hi.saturating_sub(1))) {
        (Some(a), Some(z)) if z > a => {
            (hi - lo) as f64 / z.saturating_duration_since(*a).as_secs_f64()
        }
        _ => overall,
    };
    println!(
        "== {} pods ({} through {} Deployments, {} direct) on {} hollow nodes",
        b.pods, through_deployments, deployments, direct, b.nodes
    );
    println!(
        "direct creates: {} in {:.1} s ({:.0}/s, {} errors), client-side p50 {:.1} ms p99 {:.1} ms max {:.1} ms; Deployment creates p99 {:.1} ms",
        create_lat.len(),
        created_in.as_secs_f64(),
        create_lat.len() as f64 / created_in.as_secs_f64().max(1e-3),
        create_errors,
        pct(&create_lat, 0.50),
        pct(&create_lat, 0.99),
        create_lat.last().copied().unwrap_or(0.0),
        pct(&deploy_lat, 0.99),
    );
    println!(
        "pods bound/s: {overall:.0} (first create to last bind, {:.1} s), steady state {steady:.0} (10th to 90th percentile bind)",
        last_bind.saturating_duration_since(first).as_secs_f64()
    );
    println!(
        "create -> Running on hollow nodes: p50 {:.0} ms p99 {:.0} ms max {:.0} ms",
        pct(&to_running, 0.50),
        pct(&to_running, 0.99),
        to_running.last().copied().unwrap_or(0.0)
    );
    if let Some(pid) = b.init_pid {
        println!(
            "control plane (skiff init, pid {pid}): VmRSS {:.0} MB, VmHWM {:.0} MB",
            proc_status_mb(pid, "VmRSS:").unwrap_or(0.0),
            proc_status_mb(pid, "VmHWM:").unwrap_or(0.0)
        );
    }
    println!(
        "this process (hollow nodes + watch + creates): VmRSS {:.0} MB, VmHWM {:.0} MB",
        self_rss_mb().unwrap_or(0.0),
        proc_status_mb(std::process::id(), "VmHWM:").unwrap_or(0.0)
    );
    println!("anchor: {ANCHOR}");
    let stats = cluster.stats();
    println!(
        "hollow nodes: {} registered, {} pod starts reported",
        stats.registered, stats.pods_started
    );
    drop(cluster);
    Ok(())
}
