//! `skiff bench runtime`: the node agent's container lifecycle (create → start → exit →
//! delete of a busybox `true` container through the shim) against `crun run` of the same
//! bundle, alternating one of each so both see the same machine load, printing p50/p99/mean of
//! both and their ratio.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use skiff_node_agent::runtime::cgroup::CgroupLayout;
use skiff_node_agent::runtime::container::write_config;
use skiff_node_agent::runtime::rootfs::{self, Overlay};
use skiff_node_agent::runtime::spec::{self, ContainerConfig, ImageDefaults};
use skiff_node_agent::runtime::{CreateRequest, LogRotation, Runtime, RuntimeDirs};

#[derive(Args)]
pub struct RuntimeBench {
    /// Containers run per runtime.
    #[arg(long, default_value_t = 100)]
    iterations: usize,
    /// Scratch directory (recreated). Layers, upper dirs and logs stay on its filesystem; a
    /// tmpfs is mounted at <work-dir>/run for bundles and state, as /run is on a normal host.
    #[arg(long, default_value = "/var/tmp/skiff-bench-runtime")]
    work_dir: PathBuf,
    /// The busybox binary the root filesystem layer is made of.
    #[arg(long, default_value = "/bin/busybox")]
    busybox: PathBuf,
    /// The crun binary for the baseline; empty skips it.
    #[arg(long, default_value = "crun")]
    crun: String,
}

const CGROUP_PARENT: &str = "/skiff-bench";
const WARMUP: usize = 3;

/// Latencies in microseconds.
#[derive(Default)]
struct Samples(Vec<u64>);

impl Samples {
    fn add(&mut self, d: Duration) {
        self.0.push(d.as_micros() as u64);
    }

    fn pct(&self, p: f64) -> f64 {
        let mut v = self.0.clone();
        v.sort_unstable();
        if v.is_empty() {
            return 0.0;
        }
        let i = ((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1;
        v[i] as f64 / 1000.0
    }

    fn mean(&self) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        self.0.iter().sum::<u64>() as f64 / self.0.len() as f64 / 1000.0
    }

    fn line(&self, what: &str) -> String {
        format!(
            "{what:<26} p50 {:7.2} ms  p99 {:7.2} ms  mean {:7.2} ms  (n={})",
            self.pct(0.5),
            self.pct(0.99),
            self.mean(),
            self.0.len()
        )
    }
}

pub fn run(b: RuntimeBench) -> Result<()> {
    if !b.busybox.exists() {
        bail!(
            "{} not found (apt-get install busybox-static)",
            b.busybox.display()
        );
    }
    if !b.crun.is_empty() {
        hide_controllers_from_crun()?;
    }
    let _ = std::fs::remove_dir_all(&b.work_dir);
    let layer = busybox_layer(&b.work_dir, &b.busybox)?;
    let run_dir = b.work_dir.join("run");
    std::fs::create_dir_all(&run_dir)?;
    mount_tmpfs(&run_dir)?;
    let result = measure(&b, &layer, &run_dir);
    let _ = rootfs::unmount(&run_dir.join("crun-bundle/rootfs"));
    let _ = rootfs::unmount(&run_dir);
    let _ = CgroupLayout::detect().map(|l| l.remove(CGROUP_PARENT));
    let _ = std::fs::remove_dir_all(&b.work_dir);
    result
}

fn measure(b: &RuntimeBench, layer: &Path, run_dir: &Path) -> Result<()> {
    let shim = std::env::current_exe().context("locating the skiff binary for the shim")?;
    let rt = Runtime::new(RuntimeDirs::new(run_dir, &b.work_dir.join("data")), shim)?;
    let cfg = |name: &str| ContainerConfig {
        command: vec!["true".into()],
        cgroup_path: format!("{CGROUP_PARENT}/{name}"),
        hostname: Some(name.into()),
        ..Default::default()
    };
    let crun_bundle = if b.crun.is_empty() {
        None
    } else {
        Some(crun_bundle(b, layer, run_dir, &cfg("crun"))?)
    };

    println!(
        "== {} x busybox `true`: skiff (overlay, bundle, shim, create+start, exit record, delete) \
         alternating with `crun run` of the same bundle",
        b.iterations
    );
    let (mut total, mut create, mut wait, mut delete, mut crun) = (
        Samples::default(),
        Samples::default(),
        Samples::default(),
        Samples::default(),
        Samples::default(),
    );
    for i in 0..b.iterations + WARMUP {
        let id = format!("bench-{i}");
        let spec = spec::build(&ImageDefaults::default(), &cfg(&id))?;
        let t0 = Instant::now();
        rt.create_and_start(CreateRequest {
            id: id.clone(),
            spec,
            layers: vec![layer.to_path_buf()],
            log_path: b.work_dir.join("logs").join(&id).join("0.log"),
            log_rotation: LogRotation::default(),
        })?;
        let t1 = Instant::now();
        let exit = rt.wait(&id, Duration::from_secs(30))?;
        let t2 = Instant::now();
        rt.delete(&id)?;
        let t3 = Instant::now();
        if exit.exit_code != 0 {
            bail!("container {id} exited with {exit:?}");
        }
        let crun_time = match &crun_bundle {
            Some(bundle) => Some(crun_once(b, bundle, run_dir, i)?),
            None => None,
        };
        if i >= WARMUP {
            total.add(t3 - t0);
            create.add(t1 - t0);
            wait.add(t2 - t1);
            delete.add(t3 - t2);
            if let Some(t) = crun_time {
                crun.add(t);
            }
        }
    }
    println!("{}", create.line("  create+start (running)"));
    println!("{}", wait.line("  until exit recorded"));
    println!("{}", delete.line("  delete"));
    println!("{}", total.line("skiff total"));
    if crun_bundle.is_some() {
        println!("{}", crun.line("crun run (same bundle)"));
        println!(
            "ratio skiff/crun: p50 {:.2}x  mean {:.2}x  (goal: <= 2x)",
            total.pct(0.5) / crun.pct(0.5).max(0.001),
            total.mean() / crun.mean().max(0.001)
        );
    }
    Ok(())
}

fn mount_tmpfs(dir: &Path) -> Result<()> {
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "mode=0700", "tmpfs"])
        .arg(dir)
        .status()?;
    if !st.success() {
        bail!("mounting a tmpfs on {}: {st}", dir.display());
    }
    Ok(())
}

fn busybox_layer(work: &Path, busybox: &Path) -> Result<PathBuf> {
    let layer = work.join("layers/busybox");
    std::fs::create_dir_all(layer.join("bin"))?;
    std::fs::copy(busybox, layer.join("bin/busybox")).context("copying busybox")?;
    for applet in ["sh", "true", "echo"] {
        std::os::unix::fs::symlink("busybox", layer.join("bin").join(applet))?;
    }
    for d in ["proc", "sys", "dev", "etc", "tmp"] {
        std::fs::create_dir_all(layer.join(d))?;
    }
    Ok(layer)
}

/// The same spec as a bundle for crun, its overlay mounted once.
fn crun_bundle(
    b: &RuntimeBench,
    layer: &Path,
    run_dir: &Path,
    cfg: &ContainerConfig,
) -> Result<PathBuf> {
    let bundle = run_dir.join("crun-bundle");
    Overlay {
        layers: vec![layer.to_path_buf()],
        upper: b.work_dir.join("crun-rw/upper"),
        work: b.work_dir.join("crun-rw/work"),
        target: bundle.join("rootfs"),
    }
    .mount()?;
    write_config(&bundle, &spec::build(&ImageDefaults::default(), cfg)?)?;
    Ok(bundle)
}

fn crun_once(b: &RuntimeBench, bundle: &Path, run_dir: &Path, i: usize) -> Result<Duration> {
    let t0 = Instant::now();
    let st = Command::new(&b.crun)
        .arg("--root")
        .arg(run_dir.join("crun-state"))
        .args(["run", "--bundle"])
        .arg(bundle)
        .arg(format!("crun-{i}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .with_context(|| format!("running {}", b.crun))?;
    let t = t0.elapsed();
    if !st.success() {
        bail!("crun run failed: {st}");
    }
    Ok(t)
}

/// crun 1.8 refuses hybrid cgroups while the cgroup2 mount has controllers (hugetlb on these
/// hosts). So the whole benchmark (both runtimes, for equal conditions) runs in a private
/// mount namespace without that mount, where the cgroups look like plain v1; the host's
/// mounts are untouched. Done first, while the process is single-threaded.
fn hide_controllers_from_crun() -> Result<()> {
    let unified = Path::new("/sys/fs/cgroup/unified");
    let controllers =
        std::fs::read_to_string(unified.join("cgroup.controllers")).unwrap_or_default();
    if controllers.trim().is_empty() {
        return Ok(());
    }
    // SAFETY: plain system calls in a single-threaded process; the paths are NUL-terminated
    // literals and the null pointers are allowed by mount(2) for a propagation change.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNS) != 0 {
            bail!("unshare(CLONE_NEWNS): {}", std::io::Error::last_os_error());
        }
        let flags = libc::MS_REC | libc::MS_PRIVATE;
        if libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            flags,
            std::ptr::null(),
        ) != 0
        {
            bail!("making mounts private: {}", std::io::Error::last_os_error());
        }
        let _ = libc::umount2(c"/sys/fs/cgroup/unified".as_ptr(), libc::MNT_DETACH);
    }
    println!("(hybrid cgroups: running in a private mount namespace without the cgroup2 mount, for crun)");
    Ok(())
}
