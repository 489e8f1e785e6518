//! Startup, liveness and readiness probes (exec, httpGet, tcpSocket) with upstream's timing:
//! `initialDelaySeconds`, `periodSeconds`, `timeoutSeconds`, and success/failure thresholds.
//! One task per probe of a running container instance; results that change the probe's state
//! go to the pod worker, which marks the container ready or restarts it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

use super::Shared;

/// Which probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeKind {
    /// Gates the other two until it succeeds; failing it restarts the container.
    Startup,
    /// Failing it restarts the container.
    Liveness,
    /// Its result is the container's `ready`.
    Readiness,
}

impl ProbeKind {
    /// How upstream's messages name it.
    pub fn title(self) -> &'static str {
        match self {
            ProbeKind::Startup => "Startup",
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
        }
    }
}

/// A probe's state changed.
#[derive(Clone, Debug)]
pub struct ProbeResult {
    /// The container name.
    pub container: String,
    /// The instance probed.
    pub id: String,
    /// Which probe.
    pub kind: ProbeKind,
    /// Passing (the success threshold was reached) or failing (the failure threshold was).
    pub success: bool,
    /// Why the last attempt failed.
    pub message: String,
}

/// Where a probe reaches the container.
#[derive(Clone, Debug)]
pub struct Target {
    /// The container's runtime id (for exec).
    pub id: String,
    /// The pod's network namespace (None: the host's).
    pub netns: Option<PathBuf>,
}

/// The probe tasks of one container instance; dropping it stops them.
#[derive(Debug, Default)]
pub struct Probes {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Probes {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Starts the container's probes.
pub fn start(
    shared: Arc<Shared>,
    c: &Container,
    target: Target,
    tx: mpsc::Sender<ProbeResult>,
) -> Probes {
    let mut probes = Probes::default();
    let (started_tx, started_rx) = watch::channel(c.startup_probe.is_none());
    let started_tx = Arc::new(started_tx);
    for (kind, probe) in [
        (ProbeKind::Startup, &c.startup_probe),
        (ProbeKind::Liveness, &c.liveness_probe),
        (ProbeKind::Readiness, &c.readiness_probe),
    ] {
        let Some(probe) = probe.clone() else {
            continue;
        };
        let run = Runner {
            shared: shared.clone(),
            container: c.name.clone(),
            target: target.clone(),
            kind,
            probe,
            tx: tx.clone(),
            started_tx: started_tx.clone(),
            started_rx: started_rx.clone(),
            ports: c
                .ports
                .iter()
                .flatten()
                .filter_map(|p| Some((p.name.clone()?, u16::try_from(p.container_port).ok()?)))
                .collect(),
        };
        probes.tasks.push(tokio::spawn(run.run()));
    }
    probes
}

struct Runner {
    shared: Arc<Shared>,
    container: String,
    target: Target,
    kind: ProbeKind,
    probe: Probe,
    tx: mpsc::Sender<ProbeResult>,
    started_tx: Arc<watch::Sender<bool>>,
    started_rx: watch::Receiver<bool>,
    /// The container's named ports.
    ports: Vec<(String, u16)>,
}

fn secs(v: Option<i32>, default: i32) -> Duration {
    Duration::from_secs(v.unwrap_or(default).max(0) as u64)
}

impl Runner {
    async fn run(mut self) {
        if self.kind != ProbeKind::Startup {
            // Liveness and readiness wait for the startup probe.
            while !*self.started_rx.borrow_and_update() {
                if self.started_rx.changed().await.is_err() {
                    return;
                }
            }
        }
        tokio::time::sleep(secs(self.probe.initial_delay_seconds, 0)).await;
        let period = secs(self.probe.period_seconds, 10).max(Duration::from_secs(1));
        let timeout = secs(self.probe.timeout_seconds, 1).max(Duration::from_secs(1));
        let success_needed = self.probe.success_threshold.unwrap_or(1).max(1);
        let failure_needed = self.probe.failure_threshold.unwrap_or(3).max(1);
        // Readiness starts as failing; liveness and startup as passing (nothing to report
        // until they fail).
        let mut state: Option<bool> = None;
        let (mut ok_run, mut fail_run) = (0, 0);
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let outcome = self.attempt(timeout).await;
            let (now, message) = match outcome {
                Ok(()) => {
                    ok_run += 1;
                    fail_run = 0;
                    (ok_run >= success_needed)
                        .then_some((true, String::new()))
                        .unzip()
                }
                Err(m) => {
                    fail_run += 1;
                    ok_run = 0;
                    (fail_run >= failure_needed).then_some((false, m)).unzip()
                }
            };
            let Some(now) = now else { continue };
            if state == Some(now) {
                continue;
            }
            state = Some(now);
            if self.kind == ProbeKind::Startup && now {
                let _ = self.started_tx.send(true);
            }
            let result = ProbeResult {
                container: self.container.clone(),
                id: self.target.id.clone(),
                kind: self.kind,
                success: now,
                message: message.unwrap_or_default(),
            };
            if self.tx.send(result).await.is_err() {
                return;
            }
            if self.kind == ProbeKind::Startup && now {
                // A passed startup probe is never run again.
                return;
            }
            if !now && self.kind != ProbeKind::Readiness {
                // The container is being restarted; a new instance gets new probes.
                return;
            }
        }
    }

    async fn attempt(&self, timeout: Duration) -> Result<(), String> {
        let p = &self.probe;
        if let Some(exec) = &p.exec {
            let argv = exec.command.clone().unwrap_or_default();
            return super::hooks::exec(&self.shared, &self.target.id, argv, timeout).await;
        }
        if let Some(tcp) = &p.tcp_socket {
            let port = self.port(&tcp.port)?;
            let netns = self.target.netns.as_ref();
            return tokio::time::timeout(
                timeout,
                connect(netns, tcp.host.as_deref(), port, timeout),
            )
            .await
            .map_err(|_| format!("dial tcp :{port}: i/o timeout"))?
            .map(drop);
        }
        if let Some(http) = &p.http_get {
            let port = self.port(&http.port)?;
            let path = http.path.clone().unwrap_or_else(|| "/".into());
            let headers: Vec<(String, String)> = http
                .http_headers
                .iter()
                .flatten()
                .map(|h| (h.name.clone(), h.value.clone()))
                .collect();
            let host = http.host.clone();
            let scheme = http.scheme.clone().unwrap_or_else(|| "HTTP".into());
            if scheme.eq_ignore_ascii_case("HTTPS") {
                return Err("HTTPS probes are not supported by this node".into());
            }
            let netns = self.target.netns.as_ref();
            let get = http_get(netns, host.as_deref(), port, &path, &headers, timeout);
            return tokio::time::timeout(timeout, get)
                .await
                .map_err(|_| {
                    format!(
                        "Get \"http://{}:{port}{path}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)",
                        host.as_deref().unwrap_or("localhost")
                    )
                })?;
        }
        if p.grpc.is_some() {
            return Err("gRPC probes are not supported by this node".into());
        }
        Err("the probe names no action".into())
    }

    fn port(&self, port: &IntOrString) -> Result<u16, String> {
        match port {
            IntOrString::Int(n) => u16::try_from(*n).map_err(|_| format!("invalid port {n}")),
            IntOrString::String(name) => self
                .ports
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, p)| *p)
                .ok_or_else(|| format!("port {name:?} is not a named port of the container")),
        }
    }
}

/// A TCP connection to `port` on `host`, or on the pod's loopback (its network namespace) when
/// no host is named, as probes and hooks reach a container.
pub async fn connect(
    netns: Option<&PathBuf>,
    host: Option<&str>,
    port: u16,
    timeout: Duration,
) -> Result<tokio::net::TcpStream, String> {
    let result = match (host, netns) {
        (Some(h), _) => tokio::net::TcpStream::connect((h, port))
            .await
            .map_err(|e| e.to_string()),
        (None, Some(ns)) => crate::netns::connect_loopback(ns.clone(), port, timeout)
            .await
            .map_err(|e| e.to_string()),
        (None, None) => tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| e.to_string()),
    };
    result.map_err(|e| {
        format!(
            "dial tcp {}:{port}: connect: {e}",
            host.unwrap_or("127.0.0.1")
        )
    })
}

/// An HTTP GET as upstream's prober sends it; 2xx and 3xx pass.
pub async fn http_get(
    netns: Option<&PathBuf>,
    host: Option<&str>,
    port: u16,
    path: &str,
    headers: &[(String, String)],
    timeout: Duration,
) -> Result<(), String> {
    let mut s = connect(netns, host, port, timeout).await?;
    let host_header = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("host"))
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| format!("{}:{port}", host.unwrap_or("localhost")));
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: kube-probe/1.33\r\nAccept: */*\r\nConnection: close\r\n"
    );
    for (k, v) in headers
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("host"))
    {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    // Only the status line matters; read at most a small head.
    let mut buf = vec![0u8; 1024];
    let mut got = 0;
    while got < buf.len() {
        let n = s.read(&mut buf[got..]).await.map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        got += n;
        if buf[..got].contains(&b'\n') {
            break;
        }
    }
    let head = String::from_utf8_lossy(&buf[..got]);
    let code: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| {
            format!(
                "malformed HTTP response: {:?}",
                head.lines().next().unwrap_or("")
            )
        })?;
    if (200..400).contains(&code) {
        Ok(())
    } else {
        Err(format!("HTTP probe failed with statuscode: {code}"))
    }
}
