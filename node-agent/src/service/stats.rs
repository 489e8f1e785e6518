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
    /// if `/proc` cannot be read. It may wait (for a first window, or for a concurrent call):
    /// called from a multi-threaded runtime's task, the worker hands its other tasks away first.
    pub fn sample(&self, pods: &dyn PodDirectory) -> StatsResponse {
        use tokio::runtime::{Handle, RuntimeFlavor};
        match Handle::try_current() {
            Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| self.sample_blocking(pods))
            }
            _ => self.sample_blocking(pods),
        }
    }

    fn sample_blocking(&self, pods: &dyn PodDirectory) -> StatsResponse {
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
        // Counters read this time; the others' cgroups are gone, and so are their windows.
        let mut seen = HashSet::new();
        for source in &sources {
            let key = source.key();
            if windows.age(key, now).is_some_and(|age| age > STALE_WINDOW) {
                windows.forget(key);
            }
            let Some(cpu) = self.cpu_ns(*source) else {
                continue;
            };
            seen.insert(key.to_string());
            match windows.observe(key, Reading::now(cpu), MIN_WINDOW) {
                Some(rate) => {
                    rates.insert(key.to_string(), rate);
                }
                None => fresh.push(*source),
            }
        }
        if !fresh.is_empty() {
            std::thread::sleep(FIRST_WINDOW);
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
                let (Some(rate), Some(memory)) = (
                    rates.get(cgroup.as_str()),
                    self.memory(Source::Cgroup(cgroup)),
                ) else {
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

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::process::{Child, Command, Stdio};
    use std::time::SystemTime;

    use super::*;
    use crate::service::{ContainerRef, PodRef};

    /// The kubelet's side: one pod with one container in the given cgroup.
    struct OnePod(PodRef);

    impl PodDirectory for OnePod {
        fn container(&self, _: &str, _: &str, _: &str, _: &str) -> Option<ContainerRef> {
            None
        }
        fn pod_netns(&self, _: &str, _: &str, _: &str) -> Option<PathBuf> {
            None
        }
        fn pods(&self) -> Vec<PodRef> {
            vec![self.0.clone()]
        }
    }

    /// A v1 cgroup in the cpuacct and memory hierarchies holding one process; killed and
    /// removed when dropped, also when the test fails.
    struct SpinningCgroup {
        dirs: Vec<PathBuf>,
        child: Option<Child>,
    }

    impl Drop for SpinningCgroup {
        fn drop(&mut self) {
            if let Some(mut child) = self.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
            for dir in &self.dirs {
                // The killed process leaves the cgroup once reaped; rmdir succeeds from then.
                let deadline = Instant::now() + Duration::from_secs(5);
                while std::fs::remove_dir(dir).is_err() && dir.exists() && Instant::now() < deadline
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }

    const ALLOCATED: u64 = 64 << 20;

    struct NoPods;

    impl PodDirectory for NoPods {
        fn container(&self, _: &str, _: &str, _: &str, _: &str) -> Option<ContainerRef> {
            None
        }
        fn pod_netns(&self, _: &str, _: &str, _: &str) -> Option<PathBuf> {
            None
        }
        fn pods(&self) -> Vec<PodRef> {
            Vec::new()
        }
    }

    /// The node's usage from the real /proc: a first window measured on the spot, then the
    /// same window again for a call right after it.
    fn node_windows() {
        let sampler = Sampler::new(CgroupLayout::V2 {
            root: "/nonexistent".into(),
        });
        let first = sampler.sample(&NoPods);
        let node = first.node.expect("node usage");
        assert!(node.memory_working_set_bytes > 0);
        assert!(
            first.window_ms >= FIRST_WINDOW.as_millis() as i64,
            "{first:?}"
        );
        assert!(first.pods.is_empty());
        let again = sampler.sample(&NoPods);
        // Memory is read at each call; CPU is the first window's rate again.
        assert_eq!(
            (
                again.node.map(|u| u.cpu_nanocores),
                again.timestamp_unix_ms,
                again.window_ms
            ),
            (
                Some(node.cpu_nanocores),
                first.timestamp_unix_ms,
                first.window_ms
            )
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn samples_from_a_multi_threaded_runtime() {
        node_windows();
    }

    #[tokio::test(flavor = "current_thread")]
    async fn samples_from_a_current_thread_runtime() {
        node_windows();
    }

    #[test]
    fn sampler_measures_a_spinning_process_in_its_cgroup() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!(
                "SKIPPED sampler_measures_a_spinning_process_in_its_cgroup: needs root to create cgroups"
            );
            return;
        }
        let layout = CgroupLayout::detect().expect("mountinfo");
        let CgroupLayout::V1 { hierarchies } = &layout else {
            eprintln!(
                "SKIPPED sampler_measures_a_spinning_process_in_its_cgroup: cgroup v1 only (v2 files are covered by cgroup's parser tests)"
            );
            return;
        };
        let path = format!("/skiff-test-{}", std::process::id());
        let mut cgroup = SpinningCgroup {
            dirs: Vec::new(),
            child: None,
        };
        let mut join = String::new();
        for ctrl in ["cpuacct", "memory"] {
            let dir = hierarchies[ctrl].join(path.trim_start_matches('/'));
            std::fs::create_dir(&dir).expect("create the test cgroup");
            join.push_str(&format!("echo $$ > {}/cgroup.procs; ", dir.display()));
            cgroup.dirs.push(dir);
        }
        // The shell joins the cgroup before perl starts, so all its memory is charged there:
        // 64 MiB written into a string, "ready", then a busy loop.
        let script = format!(
            "{join}exec /usr/bin/perl -e '$| = 1; $x = \"x\" x {ALLOCATED}; print \"ready\\n\"; 1 while 1'"
        );
        let mut child = Command::new("/bin/sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn the spinner");
        let stdout = child.stdout.take().expect("piped stdout");
        let pid = child.id();
        cgroup.child = Some(child);
        // perl ends the line once its memory is written, or dies and closes the pipe.
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
            .expect("read the spinner");
        assert_eq!(line, "ready\n", "the spinner did not start");
        // What the process has written: its anonymous resident memory, all charged here.
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        let rss_anon = status
            .lines()
            .find_map(|l| l.strip_prefix("RssAnon:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .expect("RssAnon")
            * 1024;
        assert!(rss_anon >= ALLOCATED, "{rss_anon}");

        let pods = OnePod(PodRef {
            namespace: "default".into(),
            name: "spin".into(),
            uid: "uid-1".into(),
            cgroup_path: path.clone(),
            containers: vec![("spin".into(), path.clone())],
        });
        let sampler = Sampler::new(layout.clone());
        // First sight: a short window measured on the spot.
        let first = sampler.sample(&pods);
        let node = first.node.expect("node usage");
        assert!(node.cpu_nanocores > 0 && node.memory_working_set_bytes > ALLOCATED);
        let pod = &first.pods[0];
        assert_eq!(
            (pod.namespace.as_str(), pod.name.as_str()),
            ("default", "spin")
        );
        assert!(pod.window_ms >= FIRST_WINDOW.as_millis() as i64, "{pod:?}");

        // Then the window since that call, once it is long enough.
        let deadline = Instant::now() + Duration::from_secs(20);
        let pod = loop {
            let s = sampler.sample(&pods);
            match s.pods.first() {
                Some(p) if p.window_ms >= 1_000 => break p.clone(),
                _ => {}
            }
            assert!(Instant::now() < deadline, "no one-second window: {s:?}");
            std::thread::sleep(Duration::from_millis(100));
        };
        let usage = pod.containers[0].usage.expect("usage");
        // One busy thread: near one core, less if the two shared cores are busy elsewhere.
        assert!(
            (250_000_000..=1_100_000_000).contains(&usage.cpu_nanocores),
            "{usage:?}"
        );
        // The working set is that memory, give or take page tables and the odd file page.
        assert!(
            (rss_anon - (4 << 20)..=rss_anon + (32 << 20))
                .contains(&usage.memory_working_set_bytes),
            "{usage:?} against {rss_anon} bytes resident"
        );
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        assert!((now_ms - pod.timestamp_unix_ms).abs() < 5_000, "{pod:?}");

        // A cgroup that is gone drops out of the answer and of the sampler's windows.
        drop(cgroup);
        let after = sampler.sample(&pods);
        assert!(after.pods.is_empty(), "{after:?}");
        assert_eq!(sampler.windows.lock().unwrap().len(), 1);
    }
}
