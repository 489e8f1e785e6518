//! `Stats`: CPU and memory of the node, pods and containers, from `/proc` and their cgroups.
//!
//! Sampled on demand: each call reads every counter and reports CPU as the rate over the window
//! since the previous call's reading. Calls less than [`MIN_WINDOW`] after a window started get
//! that window's rate again (so close calls do not report noise); a counter seen for the first
//! time, or whose window started more than [`STALE_WINDOW`] ago (an average over an hour says
//! little about now), is read twice [`FIRST_WINDOW`] apart, which makes that call wait. Memory
//! is the working set at the time of the call.
//!
//! | module | job |
//! |---|---|
//! | `window` | counters to rates: the window start and last rate per cgroup, bounded and pruned |
//! | `host` | the node's busy CPU time (`/proc/stat`) and memory in use (`/proc/meminfo`) |

mod host;
mod window;

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, Instant, UNIX_EPOCH};

use skiff_proto::agent::{ContainerStats, PodStats, StatsResponse, Usage};
use tracing::debug;

use super::PodDirectory;
use crate::runtime::cgroup::CgroupLayout;
use window::{Rate, Reading, Windows};

/// Calls closer together than this share one window's rate.
pub const MIN_WINDOW: Duration = Duration::from_secs(1);
/// A window that started longer ago than this is not reported; the counter is measured anew.
pub const STALE_WINDOW: Duration = Duration::from_secs(60);
/// The window a counter seen for the first time is measured over.
pub const FIRST_WINDOW: Duration = Duration::from_millis(200);
/// Counters followed at most (the node and every container); a node runs far fewer.
const MAX_TRACKED: usize = 4096;
/// The node's counter, apart from cgroup paths (which are absolute).
const NODE: &str = "node";

/// Keeps the previous CPU counters so usage can be given as a rate over a window.
#[derive(Debug)]
pub struct Sampler {
    cgroups: CgroupLayout,
    windows: Mutex<Windows>,
}

/// What is read for one counter.
#[derive(Clone, Copy)]
enum Source<'a> {
    Node,
    Cgroup(&'a str),
}

impl Source<'_> {
    fn key(&self) -> &str {
        match self {
            Source::Node => NODE,
            Source::Cgroup(path) => path,
        }
    }
}

impl Sampler {
    /// A sampler over the node's cgroup layout.
    pub fn new(cgroups: CgroupLayout) -> Self {
        Sampler {
            cgroups,
            windows: Mutex::new(Windows::new(MAX_TRACKED)),
        }
    }

    /// Usage now, over the window since the previous sample. Pods and containers whose cgroups
    /// cannot be read (gone since the kubelet listed them) are left out, as is the node's usage
    /// if `/proc` cannot be read.
    pub fn sample(&self, pods: &dyn PodDirectory) -> StatsResponse {
        let pods = pods.pods();
        let mut sources = vec![Source::Node];
        for pod in &pods {
            sources.extend(pod.containers.iter().map(|(_, c)| Source::Cgroup(c)));
        }
        let mut windows = self
            .windows
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = Instant::now();
        let mut rates = std::collections::HashMap::new();
        let mut fresh = Vec::new();
        for source in &sources {
            let key = source.key();
            if windows.age(key, now).is_some_and(|age| age > STALE_WINDOW) {
                windows.forget(key);
            }
            let Some(cpu) = self.cpu_ns(*source) else {
                continue;
            };
            match windows.observe(key, Reading::now(cpu), MIN_WINDOW) {
                Some(rate) => {
                    rates.insert(key.to_string(), rate);
                }
                None => fresh.push(*source),
            }
        }
        if !fresh.is_empty() {
            pause(FIRST_WINDOW);
            for source in fresh {
                let Some(cpu) = self.cpu_ns(source) else {
                    continue;
                };
                if let Some(rate) = windows.observe(source.key(), Reading::now(cpu), Duration::ZERO)
                {
                    rates.insert(source.key().to_string(), rate);
                }
            }
        }
        let seen: HashSet<String> = sources.iter().map(|s| s.key().to_string()).collect();
        windows.retain(&seen);
        drop(windows);

        let mut response = StatsResponse::default();
        if let (Some(rate), Some(memory)) = (rates.get(NODE), self.memory(Source::Node)) {
            response.node = Some(usage(rate, memory));
            (response.timestamp_unix_ms, response.window_ms) = stamp(rate);
        }
        for pod in pods {
            let mut containers = Vec::new();
            let mut earliest: Option<&Rate> = None;
            for (name, cgroup) in &pod.containers {
                let (Some(rate), Some(memory)) =
                    (rates.get(cgroup.as_str()), self.memory(Source::Cgroup(cgroup)))
                else {
                    continue;
                };
                if earliest.is_none_or(|e| rate.end < e.end) {
                    earliest = Some(rate);
                }
                containers.push(ContainerStats {
                    name: name.clone(),
                    usage: Some(usage(rate, memory)),
                });
            }
            let Some(earliest) = earliest else {
                continue;
            };
            let (timestamp_unix_ms, window_ms) = stamp(earliest);
            response.pods.push(PodStats {
                namespace: pod.namespace,
                name: pod.name,
                uid: pod.uid,
                containers,
                timestamp_unix_ms,
                window_ms,
            });
        }
        response
    }

    fn cpu_ns(&self, source: Source) -> Option<u64> {
        let read = match source {
            Source::Node => host::cpu_busy_ns().map_err(|e| e.to_string()),
            Source::Cgroup(path) => self.cgroups.cpu_usage_ns(path).map_err(|e| e.to_string()),
        };
        read.map_err(|e| debug!(counter = source.key(), error = %e, "no CPU usage"))
            .ok()
    }

    fn memory(&self, source: Source) -> Option<u64> {
        let read = match source {
            Source::Node => host::memory_working_set().map_err(|e| e.to_string()),
            Source::Cgroup(path) => self
                .cgroups
                .memory_working_set(path)
                .map_err(|e| e.to_string()),
        };
        read.map_err(|e| debug!(counter = source.key(), error = %e, "no memory usage"))
            .ok()
    }
}

fn usage(rate: &Rate, memory_working_set_bytes: u64) -> Usage {
    Usage {
        cpu_nanocores: rate.nanocores,
        memory_working_set_bytes,
    }
}

/// A rate's window end (Unix ms) and length (ms).
fn stamp(rate: &Rate) -> (i64, i64) {
    let end = rate
        .end
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis();
    let ms = |v: u128| i64::try_from(v).unwrap_or(i64::MAX);
    (ms(end), ms(rate.window.as_millis()).max(1))
}

/// Waits for a first window. The agent calls [`Sampler::sample`] from an async handler: on a
/// multi-threaded runtime the worker hands its other tasks away while this thread sleeps.
fn pause(d: Duration) {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(|| std::thread::sleep(d))
        }
        _ => std::thread::sleep(d),
    }
}
