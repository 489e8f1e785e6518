//! `skiff bench api`: pods created, updated and listed through the Kubernetes API over HTTPS
//! with the admin certificate, first closed-loop at rising concurrency, then open-loop at a
//! fixed write rate, printing p50/p99 per verb and writes/s.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::SendRequest;
use hyper::{Method, Request};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

#[derive(Args)]
pub struct ApiBench {
    /// The API server, host:port.
    #[arg(long, default_value = "127.0.0.1:6443")]
    server: String,
    /// The `skiff init` data directory whose pki/ holds the CA and the admin certificate.
    #[arg(long, default_value = "/var/lib/skiff")]
    data_dir: std::path::PathBuf,
    /// Concurrency levels of the closed-loop phase, comma-separated.
    #[arg(long, default_value = "1,8,32,64")]
    concurrency: String,
    /// Target writes per second of the open-loop phase (0 skips it).
    #[arg(long, default_value_t = 500)]
    rate: u64,
    /// Seconds per phase.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// HTTP/2 connections the clients share.
    #[arg(long, default_value_t = 4)]
    conns: usize,
}

/// Latencies of one verb, in microseconds.
#[derive(Default)]
struct Samples(Vec<u64>);

impl Samples {
    fn add(&mut self, d: Duration) {
        self.0.push(d.as_micros() as u64);
    }

    fn pct(&mut self, p: f64) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        self.0.sort_unstable();
        let i = ((self.0.len() as f64 * p).ceil() as usize).clamp(1, self.0.len()) - 1;
        self.0[i] as f64 / 1000.0
    }

    fn line(&mut self, verb: &str) -> String {
        format!(
            "{verb} p50 {:.1} ms p99 {:.1} ms (n={})",
            self.pct(0.50),
            self.pct(0.99),
            self.0.len()
        )
    }
}

pub(crate) fn tls_config(data_dir: &std::path::Path) -> Result<rustls::ClientConfig> {
    let pki = data_dir.join("pki");
    let read = |name: &str| {
        std::fs::read(pki.join(name))
            .with_context(|| format!("reading {}", pki.join(name).display()))
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut read("ca.crt")?.as_slice()) {
        roots.add(cert?)?;
    }
    let certs =
        rustls_pemfile::certs(&mut read("admin.crt")?.as_slice()).collect::<Result<Vec<_>, _>>()?;
    let key = rustls_pemfile::private_key(&mut read("admin.key")?.as_slice())?
        .ok_or_else(|| anyhow!("no private key in admin.key"))?;
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_client_auth_cert(certs, key)?;
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(cfg)
}

/// One HTTP/2 connection to the API server.
#[derive(Clone)]
pub(crate) struct Conn {
    send: SendRequest<Full<Bytes>>,
    authority: String,
}

pub(crate) async fn connect(server: &str, tls: Arc<rustls::ClientConfig>) -> Result<Conn> {
    let tcp = TcpStream::connect(server)
        .await
        .with_context(|| format!("cannot reach {server}"))?;
    tcp.set_nodelay(true)?;
    let host = server.rsplit_once(':').map(|(h, _)| h).unwrap_or(server);
    let name = rustls::pki_types::ServerName::try_from(host.to_string())?;
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await?;
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(Conn {
        send,
        authority: server.to_string(),
    })
}

impl Conn {
    /// Sends one request and returns the status, failing on anything but 2xx.
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: String,
    ) -> Result<u16> {
        let req = Request::builder()
            .method(method)
            .uri(format!("https://{}{path}", self.authority))
            .header("content-type", content_type)
            .header("accept", "application/json")
            .body(Full::new(Bytes::from(body)))?;
        let mut send = self.send.clone();
        send.ready().await?;
        let resp = send.send_request(req).await?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await?.to_bytes();
        if !(200..300).contains(&status) {
            bail!("{status}: {}", String::from_utf8_lossy(&body));
        }
        Ok(status)
    }
}

fn pod(name: &str) -> String {
    serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "bench"}},
        "spec": {"containers": [{"name": "c", "image": "registry.local/busybox:1.36"}]},
    })
    .to_string()
}

const NS: &str = "skiff-bench";

/// A closed-loop level: `clients` workers each create a pod, update it, and list every tenth
/// round, for `duration`.
async fn level(conns: &[Conn], clients: usize, duration: Duration, tag: &str) -> Result<()> {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..clients {
        let c = conns[w % conns.len()].clone();
        let tag = format!("{tag}-{w}");
        tasks.push(tokio::spawn(async move {
            let (mut create, mut update, mut list) =
                (Samples::default(), Samples::default(), Samples::default());
            let mut n = 0u64;
            while start.elapsed() < duration {
                let name = format!("p-{tag}-{n}");
                let t = Instant::now();
                c.call(
                    Method::POST,
                    &format!("/api/v1/namespaces/{NS}/pods"),
                    "application/json",
                    pod(&name),
                )
                .await?;
                create.add(t.elapsed());
                let t = Instant::now();
                let patch = format!("{{\"metadata\":{{\"labels\":{{\"round\":\"{n}\"}}}}}}");
                c.call(
                    Method::PATCH,
                    &format!("/api/v1/namespaces/{NS}/pods/{name}"),
                    "application/merge-patch+json",
                    patch,
                )
                .await?;
                update.add(t.elapsed());
                if n.is_multiple_of(10) {
                    let t = Instant::now();
                    c.call(
                        Method::GET,
                        &format!("/api/v1/namespaces/{NS}/pods?limit=100"),
                        "application/json",
                        String::new(),
                    )
                    .await?;
                    list.add(t.elapsed());
                }
                n += 1;
            }
            anyhow::Ok((create, update, list))
        }));
    }
    let (mut create, mut update, mut list) =
        (Samples::default(), Samples::default(), Samples::default());
    for t in tasks {
        let (c, u, l) = t.await??;
        create.0.extend(c.0);
        update.0.extend(u.0);
        list.0.extend(l.0);
    }
    let secs = start.elapsed().as_secs_f64();
    let writes = (create.0.len() + update.0.len()) as f64 / secs;
    println!(
        "concurrency {clients:>3}: {} | {} | {} | {writes:.0} writes/s",
        create.line("create"),
        update.line("update"),
        list.line("list")
    );
    Ok(())
}

/// Open loop: writes (alternating creates and updates) issued at `rate` per second whatever
/// the latency, so a slow server shows as latency instead of a lower request rate.
async fn open_loop(conns: &[Conn], rate: u64, duration: Duration) -> Result<()> {
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let limit = Arc::new(Semaphore::new(1024));
    let start = Instant::now();
    let mut tasks = Vec::new();
    let mut i: u64 = 0;
    while start.elapsed() < duration {
        let due = start + interval * i as u32;
        tokio::time::sleep_until(due.into()).await;
        let c = conns[i as usize % conns.len()].clone();
        let permit = limit.clone().acquire_owned().await?;
        tasks.push(tokio::spawn(async move {
            let _permit = permit;
            // Odd ticks after the first two seconds update the pod created two seconds before.
            let update = i % 2 == 1 && i >= 2 * rate;
            let name = if update {
                format!("o-{}", i - 2 * rate - 1)
            } else {
                format!("o-{i}")
            };
            if !update {
                c.call(
                    Method::POST,
                    &format!("/api/v1/namespaces/{NS}/pods"),
                    "application/json",
                    pod(&name),
                )
                .await?;
            } else {
                let patch = "{\"metadata\":{\"labels\":{\"touched\":\"yes\"}}}".to_string();
                c.call(
                    Method::PATCH,
                    &format!("/api/v1/namespaces/{NS}/pods/{name}"),
                    "application/merge-patch+json",
                    patch,
                )
                .await?;
            }
            // Latency counts from when the request was due, not when it was sent.
            anyhow::Ok(due.elapsed())
        }));
        i += 1;
    }
    let mut lat = Samples::default();
    for t in tasks {
        lat.add(t.await??);
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "open loop at {rate} writes/s for {:.0} s: {:.0} writes/s done; {} (goal: p99 <= 50 ms)",
        duration.as_secs_f64(),
        lat.0.len() as f64 / secs,
        lat.line("write"),
    );
    Ok(())
}

async fn api(b: ApiBench) -> Result<()> {
    let tls = Arc::new(tls_config(&b.data_dir)?);
    let mut conns = Vec::new();
    for _ in 0..b.conns.max(1) {
        conns.push(connect(&b.server, tls.clone()).await?);
    }
    let ns = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}});
    conns[0]
        .call(Method::POST, "/api/v1/namespaces", "application/json", ns.to_string())
        .await
        .context("creating the benchmark namespace (delete a leftover one with kubectl delete ns skiff-bench)")?;
    let duration = Duration::from_secs(b.duration);
    let result = async {
        for (i, c) in b.concurrency.split(',').enumerate() {
            let clients: usize = c
                .trim()
                .parse()
                .with_context(|| format!("bad concurrency {c:?}"))?;
            level(&conns, clients.max(1), duration, &format!("l{i}")).await?;
        }
        if b.rate > 0 {
            open_loop(&conns, b.rate, duration).await?;
        }
        anyhow::Ok(())
    }
    .await;
    let _ = conns[0]
        .call(
            Method::DELETE,
            &format!("/api/v1/namespaces/{NS}"),
            "application/json",
            String::new(),
        )
        .await;
    result
}

/// Runs the API benchmark on its own runtime.
pub fn run(b: ApiBench) -> Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(api(b))
}
