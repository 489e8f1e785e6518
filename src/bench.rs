//! `skiff bench`: load generators that print the figures issues ask for.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use skiff_proto::etcdserverpb::kv_client::KvClient;
use skiff_proto::etcdserverpb::PutRequest;
use tonic::transport::{Channel, Endpoint};

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Drive the store's etcd-compatible API with concurrent puts.
    Store(StoreBench),
    /// Create, update and list pods through the Kubernetes API.
    Api(crate::bench_api::ApiBench),
    /// Container create, start, exit and delete through the node agent's runtime, against crun.
    Runtime(crate::bench_runtime::RuntimeBench),
    /// Pod start latency on one node, and the node agent's memory with the pods running.
    Pods(crate::bench_pods::PodsBench),
    /// Scheduling throughput and pod start-up on thousands of hollow nodes.
    Schedule(crate::bench_schedule::ScheduleBench),
}

#[derive(Args)]
pub struct StoreBench {
    /// Client URLs, comma-separated; clients are spread across them.
    #[arg(long, default_value = "http://127.0.0.1:2379")]
    endpoints: String,
    /// Concurrent clients, each with one request in flight.
    #[arg(long, default_value_t = 100)]
    clients: usize,
    /// gRPC connections the clients share.
    #[arg(long, default_value_t = 10)]
    conns: usize,
    /// Bytes per value.
    #[arg(long, default_value_t = 256)]
    value_size: usize,
    /// Distinct keys written.
    #[arg(long, default_value_t = 10_000)]
    key_space: u64,
    /// How long to run, in seconds.
    #[arg(long, default_value_t = 10)]
    duration: u64,
}

pub fn run(cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Store(b) => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(store(b))
        }
        BenchCommand::Api(b) => crate::bench_api::run(b),
        BenchCommand::Runtime(b) => crate::bench_runtime::run(b),
        BenchCommand::Pods(b) => crate::bench_pods::run(b),
        BenchCommand::Schedule(b) => crate::bench_schedule::run(b),
    }
}

async fn store(b: StoreBench) -> Result<()> {
    let mut channels: Vec<Channel> = Vec::new();
    let endpoints: Vec<&str> = b.endpoints.split(',').collect();
    for i in 0..b.conns.max(1) {
        let ep = endpoints[i % endpoints.len()].to_string();
        let ch = Endpoint::from_shared(ep.clone())?
            .connect()
            .await
            .with_context(|| format!("cannot reach {ep}"))?;
        channels.push(ch);
    }
    let value = vec![b'x'; b.value_size];
    let deadline = Instant::now() + Duration::from_secs(b.duration);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..b.clients.max(1) {
        let mut kv = KvClient::new(channels[c % channels.len()].clone());
        let value = value.clone();
        let key_space = b.key_space.max(1);
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            let mut n = c as u64;
            while Instant::now() < deadline {
                let key = format!("/bench/{:08}", n % key_space).into_bytes();
                n = n.wrapping_add(7919);
                let t = Instant::now();
                match kv
                    .put(PutRequest {
                        key,
                        value: value.clone(),
                        ..Default::default()
                    })
                    .await
                {
                    Ok(_) => lat.push(t.elapsed()),
                    Err(_) => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (lat, e) = t.await?;
        all.extend(lat);
        errors += e;
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort_unstable();
    let pct = |p: f64| -> f64 {
        if all.is_empty() {
            return 0.0;
        }
        let i = ((all.len() as f64 * p).ceil() as usize).clamp(1, all.len()) - 1;
        all[i].as_secs_f64() * 1000.0
    };
    println!(
        "clients={} value_size={} duration={:.1}s writes={} errors={}",
        b.clients,
        b.value_size,
        elapsed,
        all.len(),
        errors
    );
    println!(
        "writes/s={:.0} p50={:.2}ms p99={:.2}ms max={:.2}ms",
        all.len() as f64 / elapsed,
        pct(0.50),
        pct(0.99),
        all.last().map(|d| d.as_secs_f64() * 1000.0).unwrap_or(0.0)
    );
    Ok(())
}
