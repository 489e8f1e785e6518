//! End-to-end: the node agent's container runtime on this host — containers from a busybox
//! layer run through the real shim (`skiff shim`), logs, exit codes, isolation, overlay,
//! cgroup v1 limits and their effect, re-adoption after the agent goes away, and a cross-check
//! that the same bundle runs under crun. Needs root; skips loudly otherwise.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::cluster::{require_tool, run_with_timeout, wait_until, TestDir};
use common::runtime::*;
use skiff_node_agent::runtime::cgroup::CgroupLayout;
use skiff_node_agent::runtime::container::write_config;
use skiff_node_agent::runtime::rootfs::Overlay;
use skiff_node_agent::runtime::spec::{self, BlkioThrottle, ImageDefaults, Resources};
use skiff_node_agent::runtime::{ExitReason, Status};

const T: Duration = Duration::from_secs(30);

#[test]
fn echo_lands_in_the_cri_log_and_exit_codes_are_recorded() {
    let Some(env) = RuntimeEnv::new("rt-echo") else {
        return;
    };
    let cfg = env.config(
        "echo",
        &[
            "sh",
            "-c",
            "echo hello world; echo oops >&2; printf 'no newline'",
        ],
    );
    let (exit, msgs) = env.run("echo", &cfg);
    assert_eq!(exit.exit_code, 0, "{exit:?}");
    assert_eq!(exit.reason, ExitReason::Completed);
    assert!(
        msgs.contains(&("stdout".into(), "hello world".into())),
        "{msgs:?}"
    );
    assert!(msgs.contains(&("stderr".into(), "oops".into())), "{msgs:?}");
    assert!(
        msgs.contains(&("stdout".into(), "no newline".into())),
        "{msgs:?}"
    );
    let st = env.rt().state(&env.id("echo")).unwrap();
    assert_eq!(st.status, Status::Stopped);
    assert_eq!(st.exit, Some(exit));

    let (exit, _) = env.run("three", &env.config("three", &["sh", "-c", "exit 3"]));
    assert_eq!(
        (exit.exit_code, exit.reason, exit.signal),
        (3, ExitReason::Error, None)
    );

    // A command that does not exist: reported as a start failure with libcontainer's reason.
    let err = env
        .try_create("missing", &env.config("missing", &["/no/such/binary"]))
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("/no/such/binary") || text.contains("No such file"),
        "{text}"
    );
    assert!(
        !env.rt().list().unwrap().contains(&env.id("missing")),
        "failed create left state"
    );
}

#[test]
fn init_is_pid_1_host_processes_are_hidden_and_hostname_is_set() {
    let Some(env) = RuntimeEnv::new("rt-pid1") else {
        return;
    };
    let cfg = env.config(
        "iso",
        &[
            "sh",
            "-c",
            "echo pid=$$; ls /proc | grep -c '^[0-9]'; hostname; ps -o pid,comm",
        ],
    );
    let (exit, _) = env.run("iso", &cfg);
    assert_eq!(exit.exit_code, 0);
    let out = env.stdout_lines("iso");
    assert_eq!(out[0], "pid=1", "{out:?}");
    let procs: u32 = out[1].trim().parse().unwrap();
    assert!(procs <= 4, "container sees {procs} processes: {out:?}");
    assert_eq!(out[2], "iso");
    // ps lists a header plus sh, ps; never the host's init.
    assert!(out.len() <= 3 + 4, "{out:?}");
    assert!(
        !out.iter()
            .any(|l| l.contains("systemd") || l.contains("cargo")),
        "{out:?}"
    );
}

#[test]
fn overlay_writes_go_to_the_upper_dir_and_delete_removes_everything() {
    let Some(env) = RuntimeEnv::new("rt-overlay") else {
        return;
    };
    let cfg = env.config(
        "ov",
        &["sh", "-c", "echo data > /written && rm /bin/vi && echo ok"],
    );
    let (exit, _) = env.run("ov", &cfg);
    assert_eq!(exit.exit_code, 0, "{:?}", env.log_messages("ov"));
    let paths = env.rt().dirs().container(&env.id("ov"));
    assert_eq!(
        fs::read_to_string(paths.upper().join("written")).unwrap(),
        "data\n"
    );
    // The deletion is a whiteout in the upper dir; the lower layer is untouched.
    let wh = fs::symlink_metadata(paths.upper().join("bin/vi")).unwrap();
    assert_eq!(wh.rdev(), 0, "whiteout is a 0:0 char device");
    assert!(!env.layer.join("written").exists());
    assert!(fs::symlink_metadata(env.layer.join("bin/vi")).is_ok());
    let rootfs = paths.bundle.rootfs();
    assert!(
        !mounts_under(&paths.bundle.dir).is_empty(),
        "rootfs not mounted"
    );

    env.delete("ov");
    assert!(
        mounts_under(env.dir.path()).is_empty(),
        "leftover mounts: {:?}",
        mounts_under(env.dir.path())
    );
    // The writable layer is renamed away at once and removed in the background.
    assert!(
        wait_until(T, Duration::from_millis(10), || env.rt().trash_is_empty()),
        "trash not emptied"
    );
    assert!(
        !rootfs.exists()
            && !paths.bundle.dir.exists()
            && !paths.rw_dir.exists()
            && !paths.state_dir.exists()
    );
    let layout = CgroupLayout::detect().unwrap();
    let cg = format!("{}/ov", env.cgroup_parent);
    assert!(
        !layout.exists(&cg),
        "cgroup left: {:?}",
        layout
            .dirs(&cg)
            .iter()
            .filter(|d| d.exists())
            .collect::<Vec<_>>()
    );
    // Deleting again is fine.
    env.delete("ov");
}

fn limited(env: &RuntimeEnv, name: &str, argv: &[&str], r: Resources) -> spec::ContainerConfig {
    let mut cfg = env.config(name, argv);
    cfg.resources = r;
    cfg
}

/// The block device backing `path`, if it is a real one with blkio throttling.
fn throttleable_device(path: &Path) -> Option<(u64, u64)> {
    let (major, minor) = dev_major_minor(fs::metadata(path).ok()?.dev());
    let sys = format!("/sys/dev/block/{major}:{minor}");
    if major == 0 || !Path::new(&sys).exists() {
        return None;
    }
    let layout = CgroupLayout::detect().ok()?;
    let ok = match &layout {
        CgroupLayout::V1 { hierarchies } => hierarchies
            .get("blkio")
            .is_some_and(|b| b.join("blkio.throttle.write_bps_device").exists()),
        CgroupLayout::V2 { .. } => false,
    };
    ok.then_some((major, minor))
}

#[test]
fn cgroup_limits_are_written() {
    let Some(env) = RuntimeEnv::new("rt-limits") else {
        return;
    };
    if !matches!(env.rt().cgroups(), CgroupLayout::V1 { .. }) {
        eprintln!(
            "*** SKIPPING cgroup_limits_are_written: checks v1 files, this host is cgroup v2"
        );
        return;
    }
    let (major, minor) = throttleable_device(&env.dir.path().join("data")).unwrap_or((1, 3));
    let r = Resources {
        cpu_shares: Some(512),
        cpuset_cpus: Some("0".into()),
        memory_limit: Some(48 << 20),
        pids_limit: Some(64),
        blkio: vec![BlkioThrottle {
            major: major as i64,
            minor: minor as i64,
            write_bps: Some(2 << 20),
            read_iops: Some(500),
            ..Default::default()
        }],
        ..Default::default()
    }
    .with_cpus(0.5);
    let h = env.create("lim", &limited(&env, "lim", &["sleep", "1000"], r));
    assert_eq!(
        env.read_cgroup("memory", "lim", "memory.limit_in_bytes"),
        (48u64 << 20).to_string()
    );
    assert_eq!(
        env.read_cgroup("memory", "lim", "memory.memsw.limit_in_bytes"),
        (48u64 << 20).to_string()
    );
    assert_eq!(env.read_cgroup("cpu", "lim", "cpu.cfs_quota_us"), "50000");
    assert_eq!(env.read_cgroup("cpu", "lim", "cpu.cfs_period_us"), "100000");
    assert_eq!(env.read_cgroup("cpu", "lim", "cpu.shares"), "512");
    assert_eq!(env.read_cgroup("cpuset", "lim", "cpuset.cpus"), "0");
    assert_eq!(env.read_cgroup("pids", "lim", "pids.max"), "64");
    if (major, minor) != (1, 3) {
        assert_eq!(
            env.read_cgroup("blkio", "lim", "blkio.throttle.write_bps_device"),
            format!("{major}:{minor} {}", 2 << 20)
        );
        assert_eq!(
            env.read_cgroup("blkio", "lim", "blkio.throttle.read_iops_device"),
            format!("{major}:{minor} 500")
        );
    }
    let procs = env.read_cgroup("memory", "lim", "cgroup.procs");
    assert!(
        procs.lines().any(|p| p == h.pid.to_string()),
        "init {} not in {procs:?}",
        h.pid
    );
    let st = env.rt().state(&h.id).unwrap();
    assert_eq!((st.status, st.pid), (Status::Running, Some(h.pid)));
    env.delete("lim");
}

#[test]
fn memory_hog_is_oom_killed() {
    let Some(env) = RuntimeEnv::new("rt-oom") else {
        return;
    };
    let r = Resources {
        memory_limit: Some(32 << 20),
        ..Default::default()
    };
    // The shell doubles a string until the kernel kills it at the cgroup's limit.
    let cfg = limited(
        &env,
        "hog",
        &["sh", "-c", "x=0123456789abcdef; while :; do x=$x$x; done"],
        r,
    );
    let (exit, _) = env.run("hog", &cfg);
    assert_eq!(exit.reason, ExitReason::OomKilled, "{exit:?}");
    assert_eq!((exit.exit_code, exit.signal), (137, Some(9)));
    if matches!(env.rt().cgroups(), CgroupLayout::V1 { .. }) {
        // The kernel killed it at the limit: peak usage reached it and never went over.
        // (memory.failcnt stays 0 on recent kernels' v1 memcg, so it proves nothing.)
        let read = |f| {
            env.read_cgroup("memory", "hog", f)
                .parse::<u64>()
                .unwrap_or(0)
        };
        let oom = env.read_cgroup("memory", "hog", "memory.oom_control");
        assert_eq!(
            skiff_node_agent::runtime::cgroup::parse_counter(&oom, "oom_kill"),
            Some(1),
            "{oom}"
        );
        let max = read("memory.max_usage_in_bytes");
        assert!(max >= 30 << 20, "peak usage {max} well under the limit");
        assert!(max <= 32 << 20, "max usage {max} over the limit");
    }
}

fn cpuacct_usage(env: &RuntimeEnv, name: &str) -> u64 {
    match env.rt().cgroups() {
        CgroupLayout::V1 { .. } => env
            .read_cgroup("cpuacct", name, "cpuacct.usage")
            .parse()
            .unwrap(),
        CgroupLayout::V2 { .. } => {
            let stat = env.read_cgroup("", name, "cpu.stat");
            skiff_node_agent::runtime::cgroup::parse_counter(&stat, "usage_usec").unwrap() * 1000
        }
    }
}

#[test]
fn cpu_hog_gets_its_quota_and_cpuset_pins_it() {
    let Some(env) = RuntimeEnv::new("rt-cpu") else {
        return;
    };
    let r = Resources::default().with_cpus(0.2);
    env.create(
        "spin",
        &limited(&env, "spin", &["sh", "-c", "while :; do :; done"], r),
    );
    // Measure over a few seconds of wall time (this sleep is the measurement window).
    let (u0, t0) = (cpuacct_usage(&env, "spin"), Instant::now());
    std::thread::sleep(Duration::from_secs(4));
    let (u1, t1) = (cpuacct_usage(&env, "spin"), Instant::now());
    let share = (u1 - u0) as f64 / (t1 - t0).as_nanos() as f64;
    eprintln!("cpu hog at 0.2 CPU used {:.1}%", share * 100.0);
    assert!(
        (0.15..=0.25).contains(&share),
        "used {:.1}% of a CPU",
        share * 100.0
    );
    env.rt().kill(&env.id("spin"), 9).unwrap();
    let exit = env.wait("spin", T);
    assert_eq!(
        (exit.exit_code, exit.signal, exit.reason),
        (137, Some(9), ExitReason::Error)
    );

    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let pin = (cpus - 1).to_string();
    let r = Resources {
        cpuset_cpus: Some(pin.clone()),
        ..Default::default()
    };
    let (exit, _) = env.run(
        "pinned",
        &limited(
            &env,
            "pinned",
            &["grep", "Cpus_allowed_list", "/proc/self/status"],
            r,
        ),
    );
    assert_eq!(exit.exit_code, 0);
    assert_eq!(
        env.stdout_lines("pinned"),
        vec![format!("Cpus_allowed_list:\t{pin}")]
    );
}

#[test]
fn fork_bomb_is_stopped_by_pids_max() {
    let Some(env) = RuntimeEnv::new("rt-pids") else {
        return;
    };
    let r = Resources {
        pids_limit: Some(24),
        ..Default::default()
    };
    let cfg = limited(
        &env,
        "bomb",
        &["sh", "-c", "b() { b | b & }; b; sleep 1000"],
        r,
    );
    env.create("bomb", &cfg);
    let hit = wait_until(T, Duration::from_millis(50), || {
        let current: u64 = env
            .read_cgroup("pids", "bomb", "pids.current")
            .parse()
            .unwrap_or(0);
        let events =
            fs::read_to_string(env.cgroup_file("pids", "bomb", "pids.events")).unwrap_or_default();
        let max_hits =
            skiff_node_agent::runtime::cgroup::parse_counter(&events, "max").unwrap_or(0);
        assert!(current <= 24, "pids.current {current} over the limit");
        max_hits > 0 && current >= 20
    });
    assert!(hit, "the bomb never reached pids.max");
    // The host is fine and the whole tree goes away with the container.
    env.delete("bomb");
    assert!(!CgroupLayout::detect()
        .unwrap()
        .exists(&format!("{}/bomb", env.cgroup_parent)));
}

#[test]
fn direct_io_is_throttled_by_write_bps() {
    let Some(env) = RuntimeEnv::new("rt-blkio") else {
        return;
    };
    let data = env.dir.path().join("data");
    let Some((major, minor)) = throttleable_device(&data) else {
        eprintln!(
            "\n*** SKIPPING direct_io_is_throttled_by_write_bps: {} is not on a block device with \
             blkio throttling (st_dev {:?})\n",
            data.display(),
            fs::metadata(&data).map(|m| dev_major_minor(m.dev()))
        );
        return;
    };
    let r = Resources {
        blkio: vec![BlkioThrottle {
            major: major as i64,
            minor: minor as i64,
            write_bps: Some(1 << 20),
            ..Default::default()
        }],
        ..Default::default()
    };
    let cfg = limited(
        &env,
        "dd",
        &[
            "dd",
            "if=/dev/zero",
            "of=/ddtest",
            "bs=64k",
            "count=48",
            "oflag=direct",
        ],
        r,
    );
    let start = Instant::now();
    let (exit, msgs) = env.run("dd", &cfg);
    let took = start.elapsed().as_secs_f64();
    eprintln!("3 MiB of direct writes at 1 MiB/s took {took:.2}s ({major}:{minor})");
    assert_eq!(exit.exit_code, 0, "{msgs:?}");
    assert!((2.1..=3.9).contains(&took), "took {took:.2}s, want 3s ±30%");
}

#[test]
fn containers_outlive_the_runtime_and_are_readopted() {
    let Some(mut env) = RuntimeEnv::new("rt-adopt") else {
        return;
    };
    // PID 1 ignores signals it has no handler for, so the shell traps TERM.
    let script = "trap 'echo stopping; exit 7' TERM; echo started; sleep 1000 & wait";
    let h = env.create("long", &env.config("long", &["sh", "-c", script]));
    env.reopen();
    assert!(env.rt().list().unwrap().contains(&h.id));
    let st = env.rt().state(&h.id).unwrap();
    assert_eq!((st.status, st.pid), (Status::Running, Some(h.pid)));
    assert!(Path::new(&format!("/proc/{}", h.pid)).exists());
    assert!(wait_until(T, Duration::from_millis(20), || env
        .stdout_lines("long")
        == ["started"]));
    // Graceful stop through the re-adopted handle: the shim still records the exit.
    env.rt().kill(&h.id, 15).unwrap();
    let exit = env.wait("long", T);
    assert_eq!(
        (exit.exit_code, exit.signal, exit.reason),
        (7, None, ExitReason::Error)
    );
    assert_eq!(env.stdout_lines("long"), ["started", "stopping"]);
    env.delete("long");
    assert!(!env.rt().list().unwrap().contains(&h.id));
}

#[test]
fn crun_runs_the_same_bundle() {
    if !require_tool("crun_runs_the_same_bundle", "crun") {
        return;
    }
    let Some(env) = RuntimeEnv::new("rt-crun") else {
        return;
    };
    let cfg = env.config(
        "crun",
        &["sh", "-c", "echo from crun pid=$$ host=$(hostname)"],
    );
    let spec = spec::build(&ImageDefaults::default(), &cfg).unwrap();
    let tmp = TestDir::new("rt-crun-bundle");
    let bundle = tmp.path().join("bundle");
    let ov = Overlay {
        layers: vec![env.layer.clone()],
        upper: tmp.path().join("upper"),
        work: tmp.path().join("work"),
        target: bundle.join("rootfs"),
    };
    ov.mount().unwrap();
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = skiff_node_agent::runtime::rootfs::unmount(self.0);
        }
    }
    let _guard = Unmount(&ov.target);
    write_config(&bundle, &spec).unwrap();
    let id = env.id("crun");
    // crun 1.8 refuses hybrid cgroups while the cgroup2 mount has controllers (hugetlb here):
    // run it in a private mount namespace without that mount, which leaves it pure v1.
    let crun_sh = "umount /sys/fs/cgroup/unified 2>/dev/null; exec crun \"$@\"";
    let state = tmp.path().join("crun-state");
    let out = run_with_timeout(
        Command::new("unshare")
            .args([
                "-m",
                "--propagation",
                "private",
                "sh",
                "-c",
                crun_sh,
                "crun",
                "--root",
            ])
            .arg(&state)
            .args(["run", "--bundle"])
            .arg(&bundle)
            .arg(&id),
        None,
        T,
    );
    let _ = Command::new("crun")
        .arg("--root")
        .arg(&state)
        .args(["delete", "-f", &id])
        .output();
    assert!(
        out.status.success(),
        "crun run failed: {}",
        common::cluster::describe(&out)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "from crun pid=1 host=crun"
    );
}
