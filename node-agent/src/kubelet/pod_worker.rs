//! One task per pod: makes the pod's sandbox, volumes and containers real, restarts containers
//! as the restart policy says (with upstream's crash-loop back-off), runs init containers in
//! order, stops everything gracefully when the pod is deleted, and reports status.
//!
//! The worker is level-triggered: each wake-up (a new version of the pod, a container exit,
//! a back-off timer) runs one `sync` that compares what should run with what does.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Preconditions};
use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, watch};
use tracing::Instrument;

use super::container_spec::{self, Inputs, PodFiles};
use super::cpu_manager::Placement;
use super::events::Kind;
use super::probes::{self, ProbeKind, ProbeResult};
use super::sandbox::{hosts_file, DnsSettings, Sandbox};
use super::status::{self, Phase, SlotView, StateView, Terminated};
use super::volumes::{self, PodVolumes};
use super::{annotations as ann, env, images, resources, Shared};
use crate::runtime::{spec, CreateRequest, LogRotation};

/// What the manager tells a worker.
#[derive(Clone, Debug)]
pub enum Update {
    /// The pod as the API server has it now.
    Pod(Arc<Pod>),
    /// The pod is gone from the API server: stop everything now.
    Gone,
}

/// First crash-loop back-off, doubled per crash up to [`BACKOFF_MAX`] (upstream's values).
const BACKOFF_INITIAL: Duration = Duration::from_secs(10);
/// The longest back-off.
const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// How long `SIGKILL` may take to end a container before the worker gives up waiting.
const KILL_WAIT: Duration = Duration::from_secs(10);
/// How often volumes filled from API objects are refreshed.
const VOLUME_REFRESH: Duration = Duration::from_secs(60);
/// Retry delay when setting up the sandbox or volumes fails.
const SETUP_RETRY: Duration = Duration::from_secs(2);

/// A container instance the runtime runs (or ran).
#[derive(Clone, Debug)]
struct Instance {
    id: String,
    attempt: u32,
    started_at: Timestamp,
}

/// Per-container back-off (`flowcontrol.Backoff`): the current delay and when it was set.
#[derive(Clone, Copy, Debug)]
struct Backoff {
    delay: Duration,
    since: Instant,
}

impl Backoff {
    /// Whether an event at `at` is still within the back-off window, and until when.
    fn blocks(b: Option<Backoff>, at: Instant, now: Instant) -> Option<Instant> {
        let b = b?;
        if at.saturating_duration_since(b.since) > 2 * BACKOFF_MAX {
            return None;
        }
        let until = at + b.delay;
        (now < until).then_some(until)
    }

    fn next(b: Option<Backoff>, at: Instant) -> Backoff {
        let delay = match b {
            Some(b) if at.saturating_duration_since(b.since) <= 2 * BACKOFF_MAX => {
                (b.delay * 2).min(BACKOFF_MAX)
            }
            _ => BACKOFF_INITIAL,
        };
        Backoff { delay, since: at }
    }
}

/// One container of the pod, across its restarts.
#[derive(Debug)]
struct Slot {
    name: String,
    init: bool,
    /// Restarts so far; the next instance's attempt number.
    restarts: u32,
    /// The latest instance, while it runs.
    running: Option<Instance>,
    /// The latest instance that ended (its runtime container kept until the next start).
    exited: Option<(Instance, Terminated, Instant)>,
    /// The one before it, for `lastState` once the latest has ended for good.
    previous: Option<Terminated>,
    /// Why it is not running, when that is not simply "not started yet".
    waiting: Option<(String, String)>,
    crash_backoff: Option<Backoff>,
    image_backoff: Option<(Backoff, Instant)>,
    /// The image reference and digest of the latest instance.
    image_id: Option<String>,
    /// The running instance's probes.
    probes: Option<probes::Probes>,
    /// Its readiness probe passes (or it has none).
    ready: bool,
    /// Its startup probe passed (or it has none).
    started: bool,
}

impl Slot {
    fn new(name: &str, init: bool) -> Slot {
        Slot {
            name: name.to_string(),
            init,
            restarts: 0,
            running: None,
            exited: None,
            previous: None,
            waiting: None,
            crash_backoff: None,
            image_backoff: None,
            image_id: None,
            probes: None,
            ready: false,
            started: false,
        }
    }
}

/// A container found on disk at start, with what its annotations say.
#[derive(Clone, Debug)]
pub struct Adopted {
    /// Runtime id.
    pub id: String,
    /// Container name.
    pub name: String,
    /// Its restart count when it started.
    pub attempt: u32,
    /// Whether it is an init container.
    pub init: bool,
    /// Image digest.
    pub image_id: Option<String>,
}

enum Wake {
    Update,
    Exited(String, String),
    Probe(ProbeResult),
    Timer,
    Closed,
}

/// The worker's state.
struct Worker {
    shared: Arc<Shared>,
    uid: String,
    pod: Arc<Pod>,
    gone: bool,
    slots: Vec<Slot>,
    sandbox: Sandbox,
    sandbox_ready: bool,
    volumes: Option<PodVolumes>,
    pod_dir: PathBuf,
    log_dir: PathBuf,
    files: PodFiles,
    exits_tx: mpsc::Sender<(String, String)>,
    probes_tx: mpsc::Sender<ProbeResult>,
    started_at: Timestamp,
    reported: Option<serde_json::Value>,
    conditions: status::Conditions,
    setup_error: Option<(String, String)>,
    wake_at: Option<Instant>,
    cleaned: bool,
    volumes_at: Instant,
}

/// Runs one pod until it is gone from this node.
pub async fn run(
    shared: Arc<Shared>,
    pod: Arc<Pod>,
    mut updates: watch::Receiver<Update>,
    adopted: Vec<Adopted>,
) {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let span = tracing::info_span!(
        "pod",
        pod = %format!(
            "{}/{}",
            pod.metadata.namespace.as_deref().unwrap_or(""),
            pod.metadata.name.as_deref().unwrap_or("")
        ),
        uid = %uid
    );
    async move {
        let (exits_tx, mut exits_rx) = mpsc::channel(64);
        let (probes_tx, mut probes_rx) = mpsc::channel(64);
        let mut w = Worker::new(shared, pod, exits_tx, probes_tx);
        w.adopt(adopted);
        loop {
            w.sync().await;
            w.report().await;
            if w.finished() {
                break;
            }
            let deadline = w.wake_at.take();
            let wake = tokio::select! {
                changed = updates.changed() => match changed {
                    Ok(()) => Wake::Update,
                    Err(_) => Wake::Closed,
                },
                Some((name, id)) = exits_rx.recv() => Wake::Exited(name, id),
                Some(result) = probes_rx.recv() => Wake::Probe(result),
                () = sleep_until(deadline) => Wake::Timer,
            };
            match wake {
                Wake::Update => match updates.borrow_and_update().clone() {
                    Update::Pod(p) => w.pod = p,
                    Update::Gone => w.gone = true,
                },
                Wake::Closed => w.gone = true,
                Wake::Exited(name, id) => w.on_exit(&name, &id).await,
                Wake::Probe(result) => w.on_probe(result),
                Wake::Timer => {}
            }
        }
        w.shared.directory.remove(&w.uid);
        tracing::info!("pod removed from this node");
    }
    .instrument(span)
    .await
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

fn ts(t: SystemTime) -> Timestamp {
    Timestamp::try_from(t).unwrap_or_else(|_| Timestamp::now())
}

impl Worker {
    fn new(
        shared: Arc<Shared>,
        pod: Arc<Pod>,
        exits_tx: mpsc::Sender<(String, String)>,
        probes_tx: mpsc::Sender<ProbeResult>,
    ) -> Worker {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let pod_dir = shared.config.root_dir.join("pods").join(&uid);
        let sandbox = Sandbox::at(shared.config.run_dir.join("pods").join(&uid).join("ns"));
        let log_dir = shared.config.log_dir.join(format!("{ns}_{name}_{uid}"));
        let files = PodFiles {
            hosts: pod_dir.join("etc-hosts"),
            resolv_conf: pod_dir.join("resolv.conf"),
            hostname: pod_dir.join("hostname"),
        };
        let spec = pod.spec.clone().unwrap_or_default();
        let mut slots: Vec<Slot> = spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| Slot::new(&c.name, true))
            .collect();
        slots.extend(spec.containers.iter().map(|c| Slot::new(&c.name, false)));
        Worker {
            shared,
            uid,
            pod,
            gone: false,
            slots,
            sandbox,
            sandbox_ready: false,
            volumes: None,
            pod_dir,
            log_dir,
            files,
            exits_tx,
            probes_tx,
            started_at: Timestamp::now(),
            reported: None,
            conditions: status::Conditions::default(),
            setup_error: None,
            wake_at: None,
            cleaned: false,
            volumes_at: Instant::now(),
        }
    }

    fn wake_by(&mut self, at: Instant) {
        self.wake_at = Some(match self.wake_at {
            Some(w) => w.min(at),
            None => at,
        });
    }

    fn namespace(&self) -> &str {
        self.pod.metadata.namespace.as_deref().unwrap_or("default")
    }

    fn name(&self) -> &str {
        self.pod.metadata.name.as_deref().unwrap_or("")
    }

    fn host_network(&self) -> bool {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false)
    }

    /// The pod's network namespace as probes and hooks reach it (None: the host's).
    fn netns(&self) -> Option<PathBuf> {
        (!self.host_network()).then(|| self.sandbox.net())
    }

    fn pod_cgroup(&self) -> String {
        let qos = resources::qos_class(&self.pod);
        resources::pod_cgroup(&self.shared.config.cgroup_root, qos, &self.uid)
    }

    fn restart_policy(&self) -> &str {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.as_deref())
            .unwrap_or("Always")
    }

    fn container_spec(&self, name: &str, init: bool) -> Option<Container> {
        let spec = self.pod.spec.as_ref()?;
        let list = if init {
            spec.init_containers.as_ref()?
        } else {
            &spec.containers
        };
        list.iter().find(|c| c.name == name).cloned()
    }

    fn field_path(&self, slot: usize) -> Option<String> {
        let s = &self.slots[slot];
        let list = if s.init {
            "initContainers"
        } else {
            "containers"
        };
        Some(format!("spec.{list}{{{}}}", s.name))
    }

    fn event(&self, slot: Option<usize>, kind: Kind, reason: &'static str, message: String) {
        let path = slot.and_then(|i| self.field_path(i));
        self.shared
            .events
            .pod(&self.pod, path, kind, reason, message);
    }

    /// Takes over containers an earlier agent started.
    fn adopt(&mut self, mut adopted: Vec<Adopted>) {
        adopted.sort_by_key(|a| a.attempt);
        for a in adopted {
            let Some(i) = self
                .slots
                .iter()
                .position(|s| s.name == a.name && s.init == a.init)
            else {
                self.discard(&a.id);
                continue;
            };
            let started = self
                .shared
                .runtime
                .started_at(&a.id)
                .ok()
                .flatten()
                .map(ts)
                .unwrap_or_else(Timestamp::now);
            let inst = Instance {
                id: a.id.clone(),
                attempt: a.attempt,
                started_at: started,
            };
            let exit = self.shared.runtime.exit_status(&a.id).ok().flatten();
            let slot = &mut self.slots[i];
            // An older instance than one already adopted is only history.
            if let Some((old, t, _)) = slot.exited.take() {
                slot.previous = Some(t);
                let id = old.id;
                self.discard(&id);
            }
            let slot = &mut self.slots[i];
            slot.restarts = a.attempt;
            slot.image_id = a.image_id.clone();
            match exit {
                Some(e) => {
                    let t = terminated_from(&inst, &e, None);
                    slot.exited = Some((inst, t, Instant::now()));
                }
                None => {
                    slot.running = Some(inst.clone());
                    let init = slot.init;
                    if let Some(c) = self.container_spec(&a.name, init) {
                        let cgroup = format!("{}/{}", self.pod_cgroup(), inst.id);
                        self.shared
                            .cpus
                            .place(&self.pod, &self.uid, &c, init, &cgroup);
                    }
                    self.watch_exit(a.name.clone(), inst.id.clone());
                    self.start_probes(i, &inst.id);
                }
            }
            tracing::info!(container = %a.name, id = %a.id, "re-adopted container");
        }
        if self.sandbox.exists() {
            self.sandbox_ready = true;
        }
    }

    /// Removes a runtime container in the background.
    fn discard(&self, id: &str) {
        let runtime = self.shared.runtime.clone();
        let id = id.to_string();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = runtime.delete(&id) {
                tracing::warn!(container = %id, "delete: {e}");
            }
        });
    }

    /// Waits for a container's shim to exit, then tells the worker.
    fn watch_exit(&self, name: String, id: String) {
        let runtime = self.shared.runtime.clone();
        let tx = self.exits_tx.clone();
        tokio::spawn(async move {
            if let Ok(Some(fd)) = runtime.exit_fd(&id) {
                // SAFETY: the AsyncFd owns the pidfd, which nothing else closes or replaces.
                let registered =
                    unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) };
                if let Ok(fd) = registered {
                    let _ = fd.readable().await;
                }
            }
            let _ = tx.send((name, id)).await;
        });
    }

    async fn on_exit(&mut self, name: &str, id: &str) {
        let Some(i) = self.slots.iter().position(|s| s.name == name) else {
            return;
        };
        let Some(inst) = self.slots[i].running.clone().filter(|r| r.id == id) else {
            return;
        };
        let runtime = self.shared.runtime.clone();
        let rid = id.to_string();
        let exit = tokio::task::spawn_blocking(move || runtime.wait(&rid, Duration::from_secs(5)))
            .await
            .ok()
            .and_then(Result::ok);
        let message = self.termination_message(&self.slots[i].name.clone(), inst.attempt);
        let t = match exit {
            Some(e) => terminated_from(&inst, &e, message),
            None => Terminated {
                exit_code: 137,
                signal: None,
                reason: "Error".into(),
                message: Some("the container's supervisor ended without recording an exit".into()),
                started_at: inst.started_at,
                finished_at: Timestamp::now(),
                container_id: container_id(&inst.id),
            },
        };
        tracing::info!(container = %name, exit_code = t.exit_code, reason = %t.reason, "container exited");
        let slot = &mut self.slots[i];
        slot.running = None;
        slot.probes = None;
        slot.ready = false;
        slot.started = false;
        if let Some((_, older, _)) = slot.exited.take() {
            slot.previous = Some(older);
        }
        slot.exited = Some((inst, t, Instant::now()));
    }

    /// Starts the probes of container `i`'s new instance; without probes it is ready and
    /// started at once.
    fn start_probes(&mut self, i: usize, id: &str) {
        let Some(c) = self.container_spec(&self.slots[i].name.clone(), self.slots[i].init) else {
            return;
        };
        let target = probes::Target {
            id: id.to_string(),
            netns: self.netns(),
        };
        let slot = &mut self.slots[i];
        slot.ready = c.readiness_probe.is_none();
        slot.started = c.startup_probe.is_none();
        if self.slots[i].init {
            return;
        }
        self.slots[i].probes = Some(probes::start(
            self.shared.clone(),
            &c,
            target,
            self.probes_tx.clone(),
        ));
    }

    /// A probe's state changed: readiness sets `ready`; a failed startup or liveness probe
    /// restarts the container.
    fn on_probe(&mut self, r: ProbeResult) {
        let Some(i) = self.slots.iter().position(|s| {
            s.name == r.container && s.running.as_ref().is_some_and(|x| x.id == r.id)
        }) else {
            return;
        };
        if !r.success {
            self.event(
                Some(i),
                Kind::Warning,
                "Unhealthy",
                format!("{} probe failed: {}", r.kind.title(), r.message),
            );
        }
        match (r.kind, r.success) {
            (ProbeKind::Readiness, ok) => self.slots[i].ready = ok,
            (ProbeKind::Startup, true) => self.slots[i].started = true,
            (ProbeKind::Liveness, true) => {}
            (kind, false) => {
                let name = self.slots[i].name.clone();
                self.event(
                    Some(i),
                    Kind::Normal,
                    "Killing",
                    format!(
                        "Container {name} failed {} probe, will be restarted",
                        kind.title().to_lowercase()
                    ),
                );
                self.slots[i].probes = None;
                let grace = self
                    .pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.termination_grace_period_seconds)
                    .unwrap_or(30)
                    .max(0) as u64;
                let stop = self.stopper(i, r.id, Instant::now() + Duration::from_secs(grace));
                // The exit arrives through the usual watcher and the restart policy applies.
                tokio::spawn(stop);
            }
        }
    }

    fn termination_message(&self, name: &str, attempt: u32) -> Option<String> {
        let path = self.termination_log(name, attempt);
        let bytes = std::fs::read(path).ok()?;
        let text = String::from_utf8_lossy(&bytes[..bytes.len().min(4096)]).into_owned();
        (!text.is_empty()).then_some(text)
    }

    fn termination_log(&self, name: &str, attempt: u32) -> PathBuf {
        self.pod_dir
            .join("containers")
            .join(name)
            .join(format!("{attempt}.termination-log"))
    }

    /// Done once the pod is gone and everything it had here is removed.
    fn finished(&self) -> bool {
        self.gone && self.cleaned
    }

    /// One pass of "make it so".
    async fn sync(&mut self) {
        if self.gone || self.pod.metadata.deletion_timestamp.is_some() {
            self.terminate().await;
            return;
        }
        if self.phase().is_terminal() {
            // A finished pod's exclusive CPUs go back to the shared pool.
            self.shared.cpus.release(&self.uid);
            return;
        }
        if !self.setup().await {
            return;
        }
        let now = Instant::now();
        // Init containers, one at a time, in order.
        let init_count = self.slots.iter().filter(|s| s.init).count();
        for i in 0..init_count {
            if self.slots[i].running.is_some() {
                return;
            }
            match &self.slots[i].exited {
                Some((_, t, _)) if t.exit_code == 0 => continue,
                Some((_, _, _)) if self.restart_policy() == "Never" => return,
                _ => {
                    self.start_or_back_off(i, now).await;
                    return;
                }
            }
        }
        let policy = self.restart_policy().to_string();
        for i in init_count..self.slots.len() {
            if self.slots[i].running.is_some() {
                continue;
            }
            let restart = match &self.slots[i].exited {
                None => true,
                Some((_, t, _)) => match policy.as_str() {
                    "Never" => false,
                    "OnFailure" => t.exit_code != 0,
                    _ => true,
                },
            };
            if restart {
                self.start_or_back_off(i, now).await;
            }
        }
    }

    /// Starts container `i` unless a back-off holds it, in which case it waits with
    /// `CrashLoopBackOff` or `ImagePullBackOff`.
    async fn start_or_back_off(&mut self, i: usize, now: Instant) {
        let pod_label = format!("{}_{}({})", self.name(), self.namespace(), self.uid);
        let slot = &mut self.slots[i];
        if let Some((_, _, finished)) = &slot.exited {
            if let Some(until) = Backoff::blocks(slot.crash_backoff, *finished, now) {
                let delay = slot.crash_backoff.map(|b| b.delay).unwrap_or_default();
                slot.waiting = Some((
                    "CrashLoopBackOff".into(),
                    format!(
                        "back-off {} restarting failed container={} pod={pod_label}",
                        humantime(delay),
                        slot.name
                    ),
                ));
                self.wake_by(until);
                let msg = format!(
                    "Back-off restarting failed container {} in pod {pod_label}",
                    self.slots[i].name
                );
                self.event(Some(i), Kind::Warning, "BackOff", msg);
                return;
            }
            let finished = *finished;
            slot.crash_backoff = Some(Backoff::next(slot.crash_backoff, finished));
        }
        let slot = &mut self.slots[i];
        if let Some((b, failed_at)) = slot.image_backoff {
            if let Some(until) = Backoff::blocks(Some(b), failed_at, now) {
                if slot
                    .waiting
                    .as_ref()
                    .is_some_and(|(r, _)| r == "ErrImagePull")
                {
                    let image = self
                        .container_spec(&self.slots[i].name.clone(), self.slots[i].init)
                        .and_then(|c| c.image)
                        .unwrap_or_default();
                    self.slots[i].waiting = Some((
                        "ImagePullBackOff".into(),
                        format!("Back-off pulling image {image:?}"),
                    ));
                    self.event(
                        Some(i),
                        Kind::Normal,
                        "BackOff",
                        format!("Back-off pulling image {image:?}"),
                    );
                }
                self.wake_by(until);
                return;
            }
        }
        self.start(i).await;
    }

    /// Makes the sandbox, the pod's files and volumes; false (with the reason recorded) if
    /// they are not ready yet.
    async fn setup(&mut self) -> bool {
        if !self.sandbox_ready {
            let sandbox = self.sandbox.clone();
            let hostname = self.hostname();
            let (runtime, pod, uid) = (
                self.shared.runtime.clone(),
                self.pod.clone(),
                self.uid.clone(),
            );
            let root = self.shared.config.cgroup_root.clone();
            let made = tokio::task::spawn_blocking(move || {
                resources::ensure_pod_cgroup(runtime.cgroups(), &root, &pod, &uid)
                    .map_err(|e| format!("pod cgroup: {e}"))?;
                sandbox.ensure(&hostname).map_err(|e| e.to_string())
            })
            .await;
            match made {
                Ok(Ok(())) => self.sandbox_ready = true,
                Ok(Err(e)) => {
                    let msg = format!("Failed to create pod sandbox: {e}");
                    self.event(None, Kind::Warning, "FailedCreatePodSandBox", msg.clone());
                    self.setup_error = Some(("ContainerCreating".into(), msg));
                    self.wake_by(Instant::now() + SETUP_RETRY);
                    return false;
                }
                Err(_) => return false,
            }
        }
        if let Err(e) = self.write_files() {
            self.setup_error = Some(("ContainerCreating".into(), e));
            self.wake_by(Instant::now() + SETUP_RETRY);
            return false;
        }
        // Set up once, then again every minute while volumes whose contents come from the
        // API (configMap, secret, downwardAPI, projected) exist, which refreshes them.
        let refresh = self.volumes.is_some()
            && self.refreshing_volumes()
            && self.volumes_at.elapsed() >= VOLUME_REFRESH;
        if self.volumes.is_none() {
            super::local_path::provision_for(&self.shared, &self.pod).await;
        }
        if self.volumes.is_none() || refresh {
            match PodVolumes::prepare(&self.pod, &self.pod_dir, self.shared.objects.as_ref()).await
            {
                Ok(v) => {
                    self.volumes = Some(v);
                    self.volumes_at = Instant::now();
                    if self.refreshing_volumes() {
                        self.wake_by(self.volumes_at + VOLUME_REFRESH);
                    }
                }
                Err(e) if refresh => tracing::warn!("refreshing volumes: {e}"),
                Err(e) => {
                    let msg = e.to_string();
                    self.event(None, Kind::Warning, "FailedMount", msg.clone());
                    self.setup_error = Some(("ContainerCreating".into(), msg));
                    self.wake_by(Instant::now() + SETUP_RETRY);
                    return false;
                }
            }
        }
        self.setup_error = None;
        self.publish_directory();
        true
    }

    fn refreshing_volumes(&self) -> bool {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.volumes.as_ref())
            .is_some_and(|vs| {
                vs.iter().any(|v| {
                    v.config_map.is_some()
                        || v.secret.is_some()
                        || v.downward_api.is_some()
                        || v.projected.is_some()
                })
            })
    }

    fn hostname(&self) -> String {
        let spec = self.pod.spec.as_ref();
        let name = spec
            .and_then(|s| s.hostname.clone())
            .unwrap_or_else(|| self.name().to_string());
        // Hostnames are at most 63 characters (upstream truncates the pod name).
        name.chars()
            .take(63)
            .collect::<String>()
            .trim_end_matches(['-', '.'])
            .to_string()
    }

    fn write_files(&self) -> Result<(), String> {
        let spec = self.pod.spec.clone().unwrap_or_default();
        std::fs::create_dir_all(&self.pod_dir)
            .map_err(|e| format!("creating {}: {e}", self.pod_dir.display()))?;
        let host_network = spec.host_network.unwrap_or(false);
        let hostname = if host_network {
            nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default()
        } else {
            self.hostname()
        };
        let fqdn = spec
            .subdomain
            .as_ref()
            .map(|sub| format!("{hostname}.{sub}.{}.svc.cluster.local", self.namespace()));
        let pod_ip = host_network.then(|| self.shared.config.node_ip.to_string());
        let aliases: Vec<(String, Vec<String>)> = spec
            .host_aliases
            .iter()
            .flatten()
            .map(|a| (a.ip.clone(), a.hostnames.clone().unwrap_or_default()))
            .collect();
        let hosts = if host_network {
            std::fs::read_to_string("/etc/hosts").unwrap_or_default()
        } else {
            hosts_file(&hostname, fqdn.as_deref(), pod_ip.as_deref(), &aliases)
        };
        let mut dns = match spec.dns_policy.as_deref() {
            Some("None") => DnsSettings::default(),
            _ => self.shared.dns.clone(),
        };
        if let Some(cfg) = &spec.dns_config {
            dns.nameservers
                .extend(cfg.nameservers.iter().flatten().cloned());
            dns.searches.extend(cfg.searches.iter().flatten().cloned());
            for o in cfg.options.iter().flatten() {
                let name = o.name.clone().unwrap_or_default();
                dns.options
                    .retain(|x| x.split(':').next() != Some(name.as_str()));
                dns.options.push(match &o.value {
                    Some(v) => format!("{name}:{v}"),
                    None => name,
                });
            }
        }
        for (path, text) in [
            (&self.files.hosts, hosts),
            (&self.files.resolv_conf, dns.render()),
            (&self.files.hostname, format!("{hostname}\n")),
        ] {
            if std::fs::read_to_string(path).ok().as_deref() != Some(text.as_str()) {
                std::fs::write(path, text)
                    .map_err(|e| format!("writing {}: {e}", path.display()))?;
            }
        }
        Ok(())
    }

    /// Pulls, configures and starts container `i`.
    async fn start(&mut self, i: usize) {
        let (name, init) = (self.slots[i].name.clone(), self.slots[i].init);
        let Some(c) = self.container_spec(&name, init) else {
            return;
        };
        let image_name = c.image.clone().unwrap_or_default();
        // The image.
        let got = images::ensure(
            &self.shared.images,
            &self.pod,
            &c,
            self.shared.objects.as_ref(),
        )
        .await;
        let got = match got {
            Ok(g) => g,
            Err(f) => {
                let now = Instant::now();
                let slot = &mut self.slots[i];
                let b = Backoff::next(slot.image_backoff.map(|(b, _)| b), now);
                slot.image_backoff = Some((b, now));
                slot.waiting = Some((f.reason.to_string(), f.message.clone()));
                self.event(
                    Some(i),
                    Kind::Warning,
                    "Failed",
                    format!("Failed to pull image {image_name:?}: {}", f.message),
                );
                self.event(
                    Some(i),
                    Kind::Warning,
                    "Failed",
                    format!("Error: {}", f.reason),
                );
                // Show ErrImagePull briefly, then ImagePullBackOff until the retry.
                self.wake_by(now + Duration::from_secs(1));
                return;
            }
        };
        self.slots[i].image_backoff = None;
        if let images::Got::Pulled(img) = &got {
            self.event(
                Some(i),
                Kind::Normal,
                "Pulled",
                format!("Successfully pulled image {image_name:?} ({})", img.digest),
            );
        } else {
            self.event(
                Some(i),
                Kind::Normal,
                "Pulled",
                format!("Container image {image_name:?} already present on machine"),
            );
        }
        let image = got.image().clone();
        match self.create(i, &c, &image).await {
            Ok(inst) => {
                let slot = &mut self.slots[i];
                slot.waiting = None;
                slot.image_id = Some(format!("{}@{}", image.reference, image.digest));
                slot.running = Some(inst.clone());
                self.event(
                    Some(i),
                    Kind::Normal,
                    "Created",
                    format!("Created container: {name}"),
                );
                self.event(
                    Some(i),
                    Kind::Normal,
                    "Started",
                    format!("Started container {name}"),
                );
                self.watch_exit(name, inst.id.clone());
                self.start_probes(i, &inst.id);
            }
            Err(StartFailure::Config(msg)) => {
                self.slots[i].waiting = Some(("CreateContainerConfigError".into(), msg.clone()));
                self.event(Some(i), Kind::Warning, "Failed", format!("Error: {msg}"));
                self.wake_by(Instant::now() + SETUP_RETRY);
            }
            Err(StartFailure::Runtime(inst, msg)) => {
                // Upstream reports a container that could not start as terminated with
                // StartError and restarts it with back-off.
                self.event(Some(i), Kind::Warning, "Failed", format!("Error: {msg}"));
                let t = Terminated {
                    exit_code: 128,
                    signal: None,
                    reason: "StartError".into(),
                    message: Some(msg),
                    started_at: Timestamp::UNIX_EPOCH,
                    finished_at: Timestamp::now(),
                    container_id: container_id(&inst.id),
                };
                let slot = &mut self.slots[i];
                slot.waiting = None;
                if let Some((_, older, _)) = slot.exited.take() {
                    slot.previous = Some(older);
                }
                slot.exited = Some((inst, t, Instant::now()));
                self.wake_by(Instant::now());
            }
        }
    }

    async fn create(
        &mut self,
        i: usize,
        c: &Container,
        image: &crate::image::Image,
    ) -> Result<Instance, StartFailure> {
        let attempt = self.slots[i].restarts + u32::from(self.slots[i].exited.is_some());
        let id = format!("{}-{}-{attempt}", self.uid, c.name);
        let inst = Instance {
            id: id.clone(),
            attempt,
            started_at: Timestamp::now(),
        };
        let config_err = |e: String| StartFailure::Config(e);
        let env = env::container_env(
            &self.pod,
            c,
            self.shared.objects.as_ref(),
            &self.shared.allocatable,
        )
        .await
        .map_err(|e| config_err(e.to_string()))?;
        let volumes = match &self.volumes {
            Some(v) => v.mounts(c).map_err(|e| config_err(e.to_string()))?,
            None => Vec::new(),
        };
        let mut res = resources::container_resources(&self.pod, c).map_err(|e| config_err(e.0))?;
        let pod_cgroup = self.pod_cgroup();
        let cgroup_path = format!("{pod_cgroup}/{id}");
        let init = self.slots[i].init;
        let placement = self
            .shared
            .cpus
            .place(&self.pod, &self.uid, c, init, &cgroup_path);
        if let Placement::SharedInstead { pool, wanted } = &placement {
            let msg = format!(
                "{wanted} exclusive CPU(s) are not free without emptying the shared pool; \
                 running on the shared CPUs {pool}"
            );
            self.event(Some(i), Kind::Warning, "CPUsNotExclusive", msg);
        }
        if let Some(cpus) = placement.cpus() {
            res.cpuset_cpus = Some(cpus);
        }
        let termination_log = self.termination_log(&c.name, attempt);
        if let Some(dir) = termination_log.parent() {
            std::fs::create_dir_all(dir).map_err(|e| config_err(e.to_string()))?;
        }
        std::fs::write(&termination_log, b"").map_err(|e| config_err(e.to_string()))?;
        // Any user the container runs as may write its termination message, as upstream allows.
        std::fs::set_permissions(&termination_log, std::fs::Permissions::from_mode(0o666))
            .map_err(|e| config_err(e.to_string()))?;
        let defaults = images::defaults(image).map_err(|e| config_err(e.to_string()))?;
        let cfg = container_spec::build(Inputs {
            pod: &self.pod,
            container: c,
            image: &defaults,
            env,
            volumes,
            sandbox: &self.sandbox,
            files: &self.files,
            termination_log: &termination_log,
            cgroup_path,
            resources: res,
            pid_namespace: self.shared_pid_namespace(),
            seccomp_dir: &self.shared.config.root_dir.join("seccomp"),
        })
        .map_err(|e| config_err(e.0))?;
        let mut oci = spec::build(&defaults, &cfg).map_err(|e| config_err(e.to_string()))?;
        let mut annotations = HashMap::new();
        annotations.insert(ann::POD_UID.to_string(), self.uid.clone());
        annotations.insert(ann::POD_NAME.to_string(), self.name().to_string());
        annotations.insert(ann::POD_NAMESPACE.to_string(), self.namespace().to_string());
        annotations.insert(ann::CONTAINER_NAME.to_string(), c.name.clone());
        annotations.insert(ann::RESTART_COUNT.to_string(), attempt.to_string());
        annotations.insert(ann::INIT.to_string(), self.slots[i].init.to_string());
        annotations.insert(
            ann::IMAGE_ID.to_string(),
            format!("{}@{}", image.reference, image.digest),
        );
        oci.set_annotations(Some(annotations));
        // The previous instance goes now (its log stays for `--previous`).
        if let Some((old, _, _)) = &self.slots[i].exited {
            let runtime = self.shared.runtime.clone();
            let old_id = old.id.clone();
            let _ = tokio::task::spawn_blocking(move || runtime.delete(&old_id)).await;
            self.prune_logs(&c.name, attempt);
        }
        if attempt > 0 && self.slots[i].exited.is_some() {
            self.slots[i].restarts = attempt;
        }
        let log_path = self.log_dir.join(&c.name).join(format!("{attempt}.log"));
        let req = CreateRequest {
            id: id.clone(),
            spec: oci,
            layers: image.layers.clone(),
            log_path,
            log_rotation: LogRotation::default(),
        };
        let runtime = self.shared.runtime.clone();
        let started = tokio::task::spawn_blocking(move || runtime.create_and_start(req)).await;
        match started {
            Ok(Ok(_handle)) => {
                self.shared.cpus.settle(&self.uid, &c.name);
                let started_at = self
                    .shared
                    .runtime
                    .started_at(&id)
                    .ok()
                    .flatten()
                    .map(ts)
                    .unwrap_or_else(Timestamp::now);
                Ok(Instance { started_at, ..inst })
            }
            Ok(Err(e)) => Err(StartFailure::Runtime(inst, e.to_string())),
            Err(e) => Err(StartFailure::Runtime(inst, e.to_string())),
        }
    }

    /// The task that stops container `i`'s instance `id` by `deadline`.
    fn stopper(
        &self,
        i: usize,
        id: String,
        deadline: Instant,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let spec = self.container_spec(&self.slots[i].name.clone(), self.slots[i].init);
        let target = super::hooks::HookTarget {
            id,
            netns: self.netns(),
            ports: spec
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .filter_map(|p| Some((p.name.clone()?, u16::try_from(p.container_port).ok()?)))
                .collect(),
        };
        let hook = spec
            .and_then(|c| c.lifecycle)
            .and_then(|l| l.pre_stop)
            .map(|h| (h, self.pod.clone(), self.field_path(i)));
        stop_container(self.shared.clone(), target, hook, deadline)
    }

    /// With `shareProcessNamespace`, the PID namespace of a container of the pod that runs
    /// (the first one started gets a new one, which the others join).
    fn shared_pid_namespace(&self) -> Option<PathBuf> {
        let shared = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.share_process_namespace)
            .unwrap_or(false);
        if !shared {
            return None;
        }
        self.slots
            .iter()
            .filter_map(|s| s.running.as_ref())
            .filter_map(|r| self.shared.runtime.state(&r.id).ok()?.pid)
            .map(|pid| PathBuf::from(format!("/proc/{pid}/ns/pid")))
            .next()
    }

    /// Keeps the current and the previous instance's logs of a container; older ones go.
    fn prune_logs(&self, name: &str, attempt: u32) {
        let dir = self.log_dir.join(name);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return;
        };
        for e in entries.flatten() {
            let file = e.file_name().to_string_lossy().into_owned();
            let n: Option<u32> = file.split('.').next().and_then(|n| n.parse().ok());
            if n.is_some_and(|n| n + 1 < attempt) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }

    /// Stops every container (preStop hook, SIGTERM, grace period, SIGKILL), then removes the
    /// containers, the sandbox, volumes and files, and finally the pod object.
    async fn terminate(&mut self) {
        let grace = Duration::from_secs(
            self.pod
                .metadata
                .deletion_grace_period_seconds
                .or_else(|| {
                    self.pod
                        .spec
                        .as_ref()
                        .and_then(|s| s.termination_grace_period_seconds)
                })
                .unwrap_or(30)
                .max(0) as u64,
        );
        let grace = if self.gone {
            grace.min(Duration::from_secs(2))
        } else {
            grace
        };
        let deadline = Instant::now() + grace;
        let mut stops = Vec::new();
        for i in 0..self.slots.len() {
            if let Some(inst) = self.slots[i].running.clone() {
                let name = self.slots[i].name.clone();
                self.event(
                    Some(i),
                    Kind::Normal,
                    "Killing",
                    format!("Stopping container {name}"),
                );
                stops.push(self.stopper(i, inst.id, deadline));
            }
        }
        futures::future::join_all(stops).await;
        // Record how each ended.
        for i in 0..self.slots.len() {
            if let Some(inst) = self.slots[i].running.clone() {
                let name = self.slots[i].name.clone();
                self.on_exit(&name, &inst.id).await;
            }
        }
        let mut ids: Vec<String> = Vec::new();
        for s in &self.slots {
            ids.extend(s.exited.iter().map(|(inst, _, _)| inst.id.clone()));
        }
        let runtime = self.shared.runtime.clone();
        let sandbox = self.sandbox.clone();
        let pod_dir = self.pod_dir.clone();
        let log_dir = self.log_dir.clone();
        let remove_logs = self.gone;
        let pod_cgroup = self.pod_cgroup();
        self.shared.cpus.release(&self.uid);
        let cleaned = tokio::task::spawn_blocking(move || {
            for id in &ids {
                if let Err(e) = runtime.delete(id) {
                    tracing::warn!(container = %id, "delete: {e}");
                }
            }
            if let Err(e) = runtime.cgroups().remove(&pod_cgroup) {
                tracing::warn!("removing the pod's cgroup {pod_cgroup}: {e}");
            }
            if let Err(e) = sandbox.remove() {
                tracing::warn!("removing the sandbox: {e}");
            } else if let Some(run_dir) = sandbox.dir().parent() {
                let _ = std::fs::remove_dir(run_dir);
            }
            if let Err(e) = volumes::teardown(&pod_dir) {
                tracing::warn!("removing volumes: {e}");
            }
            let _ = std::fs::remove_dir_all(&pod_dir);
            if remove_logs {
                let _ = std::fs::remove_dir_all(&log_dir);
            }
        })
        .await;
        if cleaned.is_err() {
            tracing::warn!("clean-up task failed");
        }
        self.sandbox_ready = false;
        self.volumes = None;
        self.cleaned = true;
        if !self.gone {
            // Final status, then the kubelet's part of graceful deletion: remove the object.
            self.report().await;
            let api: Api<Pod> = Api::namespaced(self.shared.client.clone(), self.namespace());
            let dp = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: Some(self.uid.clone()),
                    resource_version: None,
                }),
                ..Default::default()
            };
            match api.delete(self.name(), &dp).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                Err(e) => {
                    tracing::warn!("deleting the pod object: {e}");
                    self.wake_by(Instant::now() + SETUP_RETRY);
                    return;
                }
            }
            self.gone = true;
            let _ = std::fs::remove_dir_all(&self.log_dir);
        }
    }

    /// The status as the API should show it.
    fn phase(&self) -> Phase {
        status::phase(&self.views(), self.restart_policy())
    }

    fn views(&self) -> Vec<SlotView> {
        self.slots
            .iter()
            .map(|s| {
                let state = if let Some(r) = &s.running {
                    StateView::Running {
                        started_at: r.started_at,
                        id: container_id(&r.id),
                    }
                } else if let Some(w) = s.waiting.clone().or_else(|| {
                    s.exited
                        .is_none()
                        .then(|| self.setup_error.clone())
                        .flatten()
                }) {
                    StateView::Waiting(w.0, w.1)
                } else if let Some((_, t, _)) = &s.exited {
                    StateView::Terminated(t.clone())
                } else {
                    StateView::Waiting(
                        if s.init {
                            "PodInitializing"
                        } else {
                            "ContainerCreating"
                        }
                        .into(),
                        String::new(),
                    )
                };
                let last = match (&state, &s.exited) {
                    (StateView::Terminated(_), _) => s.previous.clone(),
                    (_, Some((_, t, _))) => Some(t.clone()),
                    _ => s.previous.clone(),
                };
                let image = self
                    .container_spec(&s.name, s.init)
                    .and_then(|c| c.image)
                    .unwrap_or_default();
                SlotView {
                    name: s.name.clone(),
                    init: s.init,
                    image,
                    image_id: s.image_id.clone().unwrap_or_default(),
                    restarts: s.restarts,
                    ready: s.running.is_some() && s.ready,
                    started: s.running.is_some() && s.started,
                    state,
                    last,
                }
            })
            .collect()
    }

    fn publish_directory(&self) {
        let views = self.views();
        let pod_cgroup = self.pod_cgroup();
        let entry = super::DirEntry {
            namespace: self.namespace().to_string(),
            name: self.name().to_string(),
            uid: self.uid.clone(),
            netns: if self.host_network() {
                Some(PathBuf::from("/proc/self/ns/net"))
            } else {
                self.sandbox_ready.then(|| self.sandbox.net())
            },
            cgroup: pod_cgroup.clone(),
            containers: self
                .slots
                .iter()
                .zip(views)
                .map(|(s, _)| {
                    let current = s.running.as_ref().or(s.exited.as_ref().map(|(i, _, _)| i));
                    (
                        s.name.clone(),
                        super::DirContainer {
                            id: current.map(|c| c.id.clone()),
                            attempt: current.map(|c| c.attempt).unwrap_or(0),
                            running: s.running.is_some(),
                            log_dir: self.log_dir.join(&s.name),
                            cgroup: current.map(|c| format!("{pod_cgroup}/{}", c.id)),
                        },
                    )
                })
                .collect(),
        };
        self.shared.directory.insert(entry);
    }

    /// Patches the pod's status when it changed.
    async fn report(&mut self) {
        if self.gone {
            return;
        }
        self.publish_directory();
        let views = self.views();
        let phase = status::phase(&views, self.restart_policy());
        let status = status::pod_status(status::Input {
            pod: &self.pod,
            views: &views,
            phase,
            sandbox_ready: self.sandbox_ready,
            host_ip: self.shared.config.node_ip.to_string(),
            pod_ip: self
                .host_network()
                .then(|| self.shared.config.node_ip.to_string()),
            started_at: self.started_at,
            qos: resources::qos_class(&self.pod).as_str(),
            conditions: &mut self.conditions,
        });
        if self.reported.as_ref() == Some(&status) {
            return;
        }
        let api: Api<Pod> = Api::namespaced(self.shared.client.clone(), self.namespace());
        let patch = serde_json::json!({ "status": status });
        // A few writes at a time: each concurrent request may hold its own connection.
        let shared = self.shared.clone();
        let _slot = shared.api_writes.acquire().await;
        match api
            .patch_status(
                self.name(),
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => self.reported = Some(status),
            Err(kube::Error::Api(s)) if s.code == 404 => {
                self.gone = true;
                self.wake_by(Instant::now());
            }
            Err(e) => {
                tracing::warn!("status update: {e}");
                self.wake_by(Instant::now() + SETUP_RETRY);
            }
        }
    }
}

enum StartFailure {
    /// The container cannot be configured (missing ConfigMap key, bad limits, ...).
    Config(String),
    /// The runtime could not start it.
    Runtime(Instance, String),
}

fn container_id(id: &str) -> String {
    format!("skiff://{id}")
}

fn terminated_from(
    inst: &Instance,
    e: &crate::runtime::ExitStatus,
    message: Option<String>,
) -> Terminated {
    let finished_at = e
        .finished_at
        .parse::<Timestamp>()
        .unwrap_or_else(|_| Timestamp::now());
    Terminated {
        exit_code: e.exit_code,
        signal: e.signal,
        reason: match e.reason {
            crate::runtime::ExitReason::Completed => "Completed",
            crate::runtime::ExitReason::Error => "Error",
            crate::runtime::ExitReason::OomKilled => "OOMKilled",
        }
        .into(),
        message,
        started_at: inst.started_at,
        finished_at,
        container_id: container_id(&inst.id),
    }
}

/// `1m20s`, `10s`, `5m0s`: Go's duration formatting, which upstream's messages use.
fn humantime(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 {
        format!("{}m{}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// Stops one container: its preStop hook (bounded by the grace period; a failure is an
/// event), SIGTERM, the rest of the grace period, then SIGKILL.
async fn stop_container(
    shared: Arc<Shared>,
    target: super::hooks::HookTarget,
    hook: Option<(
        k8s_openapi::api::core::v1::LifecycleHandler,
        Arc<Pod>,
        Option<String>,
    )>,
    deadline: Instant,
) {
    let id = target.id.clone();
    if let Some((hook, pod, field_path)) = hook {
        if let Err(e) = super::hooks::run(&shared, &target, &hook, deadline).await {
            let message = format!("PreStopHook failed: {e}");
            tracing::info!(container = %id, "{message}");
            shared.events.pod(
                &pod,
                field_path,
                Kind::Warning,
                "FailedPreStopHook",
                message,
            );
        }
    }
    let runtime = shared.runtime.clone();
    let rid = id.clone();
    let remaining = deadline.saturating_duration_since(Instant::now());
    let ended = tokio::task::spawn_blocking(move || {
        if let Err(e) = runtime.kill(&rid, libc::SIGTERM) {
            tracing::debug!(container = %rid, "SIGTERM: {e}");
        }
        if runtime.wait(&rid, remaining).is_ok() {
            return true;
        }
        if let Err(e) = runtime.kill(&rid, libc::SIGKILL) {
            tracing::debug!(container = %rid, "SIGKILL: {e}");
        }
        runtime.wait(&rid, KILL_WAIT).is_ok()
    })
    .await
    .unwrap_or(false);
    if !ended {
        tracing::warn!(container = %id, "container did not stop");
    }
}
