//! The kubelet loop end to end (root only): pods bound to the node run as real containers,
//! their statuses follow upstream, and deleting them stops and removes everything.

mod common;

use std::time::Duration;

use common::cluster::wait_until;
use common::images::{busybox_layer, require, LayerTar, TestImage};
use common::pods::{condition, container_status, pod_yaml, NodeCluster};

#[test]
fn a_pod_runs_logs_and_is_deleted_gracefully() {
    let name = "a_pod_runs_logs_and_is_deleted_gracefully";
    if !require(name, true, &[]) {
        return;
    }
    let c = NodeCluster::start(name);
    c.apply(&pod_yaml(
        "hello",
        &c.node,
        "echo hello from $(hostname); exec sleep 3600",
        "",
    ));
    let pod = c.wait_pod("hello", Duration::from_secs(30), "Running", |p| {
        p["status"]["phase"] == "Running"
    });
    let st = container_status(&pod, "main");
    assert_eq!(st["ready"], true, "{pod}");
    assert_eq!(st["restartCount"], 0);
    assert!(
        st["containerID"]
            .as_str()
            .unwrap_or("")
            .starts_with("skiff://"),
        "{st}"
    );
    assert!(st["state"]["running"]["startedAt"].is_string(), "{st}");
    assert_eq!(pod["status"]["qosClass"], "BestEffort");
    let ready = condition(&pod, "Ready");
    assert_eq!(ready["status"], "True", "{pod}");

    // SIGTERM is ignored by sleep as PID 1: the grace period (5 s) runs out, then SIGKILL.
    let started = std::time::Instant::now();
    let out = c
        .init
        .kubectl(&["delete", "pod", "hello", "--wait=true", "--timeout=60s"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(4) && took < Duration::from_secs(30),
        "deletion took {took:?}"
    );
    c.wait_gone("hello", Duration::from_secs(10));
}

fn ts(v: &serde_json::Value) -> i64 {
    let s = v.as_str().unwrap_or_else(|| panic!("not a timestamp: {v}"));
    let out = std::process::Command::new("date")
        .args(["-u", "-d", s, "+%s"])
        .output()
        .expect("date");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("bad timestamp {s}"))
}

#[test]
fn exit_codes_and_restart_back_off() {
    let name = "exit_codes_and_restart_back_off";
    if !require(name, true, &[]) {
        return;
    }
    let c = NodeCluster::start(name);
    let never = "  restartPolicy: Never\n";
    c.apply(&pod_yaml("fails", &c.node, "echo bye; exit 3", never));
    c.apply(&pod_yaml("succeeds", &c.node, "true", never));
    c.apply(&pod_yaml("crashes", &c.node, "exit 1", ""));

    let failed = c.wait_pod("fails", Duration::from_secs(30), "Failed", |p| {
        p["status"]["phase"] == "Failed"
    });
    let t = &container_status(&failed, "main")["state"]["terminated"];
    assert_eq!(t["exitCode"], 3, "{failed}");
    assert_eq!(t["reason"], "Error");
    let done = c.wait_pod("succeeds", Duration::from_secs(30), "Succeeded", |p| {
        p["status"]["phase"] == "Succeeded"
    });
    let t = &container_status(&done, "main")["state"]["terminated"];
    assert_eq!(
        (t["exitCode"].as_i64(), t["reason"].as_str()),
        (Some(0), Some("Completed"))
    );

    // Always: the first restart is immediate, the next waits 10 s in CrashLoopBackOff.
    let looping = c.wait_pod(
        "crashes",
        Duration::from_secs(30),
        "CrashLoopBackOff",
        |p| container_status(p, "main")["state"]["waiting"]["reason"] == "CrashLoopBackOff",
    );
    let st = container_status(&looping, "main");
    assert_eq!(st["restartCount"], 1, "{st}");
    assert_eq!(st["lastState"]["terminated"]["exitCode"], 1, "{st}");
    assert!(
        st["state"]["waiting"]["message"]
            .as_str()
            .unwrap_or("")
            .starts_with("back-off 10s restarting failed container=main pod=crashes_default("),
        "{st}"
    );
    assert_eq!(looping["status"]["phase"], "Running");
    let second = c.wait_pod(
        "crashes",
        Duration::from_secs(40),
        "a second restart",
        |p| container_status(p, "main")["restartCount"].as_i64() >= Some(2),
    );
    let st = container_status(&second, "main");
    let started = match st["state"]["running"]["startedAt"].is_string() {
        true => ts(&st["state"]["running"]["startedAt"]),
        false => ts(&st["lastState"]["terminated"]["startedAt"]),
    };
    let first_finish = ts(&looping
        .pointer("/status/containerStatuses/0/lastState/terminated/finishedAt")
        .cloned()
        .unwrap_or_default());
    let gap = started - first_finish;
    assert!(
        (9..=14).contains(&gap),
        "second restart {gap} s after the first crash\n{second}"
    );
}

#[test]
fn init_containers_run_in_order_before_the_main_one() {
    let name = "init_containers_run_in_order_before_the_main_one";
    if !require(name, true, &[]) {
        return;
    }
    let c = NodeCluster::start(name);
    let init = format!(
        "  initContainers:\n  - name: first\n    image: {img}\n    command: [\"sh\", \"-c\", \"sleep 1\"]\n  - name: second\n    image: {img}\n    command: [\"sh\", \"-c\", \"sleep 1\"]\n",
        img = common::pods::IMAGE
    );
    c.apply(&pod_yaml("inits", &c.node, "exec sleep 3600", &init));
    let pending = c.wait_pod("inits", Duration::from_secs(30), "initialising", |p| {
        p["status"]["initContainerStatuses"].as_array().is_some()
    });
    assert_eq!(pending["status"]["phase"], "Pending", "{pending}");
    let pod = c.wait_pod("inits", Duration::from_secs(30), "Running", |p| {
        p["status"]["phase"] == "Running"
    });
    let inits = pod["status"]["initContainerStatuses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(inits.len(), 2, "{pod}");
    let t1 = &inits[0]["state"]["terminated"];
    let t2 = &inits[1]["state"]["terminated"];
    assert_eq!(
        (t1["reason"].as_str(), t2["reason"].as_str()),
        (Some("Completed"), Some("Completed")),
        "{pod}"
    );
    assert!(ts(&t1["finishedAt"]) <= ts(&t2["startedAt"]), "{pod}");
    let main_started = ts(&container_status(&pod, "main")["state"]["running"]["startedAt"]);
    assert!(ts(&t2["finishedAt"]) <= main_started, "{pod}");
    let initialized = condition(&pod, "Initialized");
    assert_eq!(initialized["status"], "True");
}

#[test]
fn bad_images_and_impossible_limits_end_as_clear_statuses() {
    let name = "bad_images_and_impossible_limits_end_as_clear_statuses";
    if !require(name, true, &[]) {
        return;
    }
    let c = NodeCluster::start(name);
    let pod = |pod: &str, image: &str, extra: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {pod}\n{extra}spec:\n  nodeName: {node}\n  containers:\n  - name: main\n    image: {image}\n    command: [\"sleep\", \"3600\"]\n",
            node = c.node
        )
    };
    c.apply(&pod("unpullable", "127.0.0.1:9/nothing/here:bad", ""));
    c.apply(&pod("malformed", "Not//A:Valid@Ref", ""));
    c.apply(&pod(
        "pinned-nowhere",
        common::pods::IMAGE,
        "  annotations:\n    cpuset.skiff.dev/main: \"4000\"\n",
    ));
    c.apply(&pod(
        "bad-swap",
        common::pods::IMAGE,
        "  annotations:\n    memory-swap.skiff.dev/main: \"1Mi\"\n",
    ));
    let waiting = |p: &serde_json::Value| container_status(p, "main")["state"]["waiting"].clone();
    // The states the pod goes through, from a watch: a failed pull, then back-off (the
    // watch may start in either; a retry comes 10 s after the first failure).
    let mut states = c.init.kubectl_stream(&[
        "get",
        "pod",
        "unpullable",
        "-w",
        "-o",
        "jsonpath={.status.containerStatuses[0].state.waiting.reason} {.status.containerStatuses[0].state.waiting.message}{\"\\n\"}",
    ]);
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    while std::time::Instant::now() < deadline {
        let Some(line) = states.next_line(Duration::from_secs(5)) else {
            continue;
        };
        let reason = line.split(' ').next().unwrap_or("").to_string();
        if seen.last() != Some(&reason) {
            seen.push(reason.clone());
        }
        if reason == "ErrImagePull" {
            assert!(line.contains("127.0.0.1:9"), "{line}");
        }
        if reason == "ImagePullBackOff" {
            assert!(
                line.ends_with("Back-off pulling image \"127.0.0.1:9/nothing/here:bad\""),
                "{line}"
            );
            if seen.iter().any(|r| r == "ErrImagePull") {
                break;
            }
        }
    }
    assert!(
        seen.windows(2)
            .any(|w| w == ["ErrImagePull", "ImagePullBackOff"]),
        "states seen: {seen:?}"
    );
    let p = c.wait_pod(
        "malformed",
        Duration::from_secs(30),
        "InvalidImageName",
        |p| waiting(p)["reason"] == "InvalidImageName",
    );
    assert!(
        waiting(&p)["message"]
            .as_str()
            .unwrap_or("")
            .contains("Not//A:Valid@Ref"),
        "{p}"
    );
    let p = c.wait_pod(
        "bad-swap",
        Duration::from_secs(30),
        "CreateContainerConfigError",
        |p| waiting(p)["reason"] == "CreateContainerConfigError",
    );
    assert!(
        waiting(&p)["message"]
            .as_str()
            .unwrap_or("")
            .contains("memory limit"),
        "{p}"
    );
    let p = c.wait_pod(
        "pinned-nowhere",
        Duration::from_secs(30),
        "a start error",
        |p| {
            let st = container_status(p, "main");
            st["lastState"]["terminated"]["reason"] == "StartError"
                || st["state"]["terminated"]["reason"] == "StartError"
        },
    );
    assert_eq!(p["status"]["phase"], "Running", "{p}");
    // The agent is still there for the next pod.
    c.apply(&pod_yaml("after", &c.node, "exec sleep 3600", ""));
    c.wait_pod("after", Duration::from_secs(30), "Running", |p| {
        p["status"]["phase"] == "Running"
    });
}

#[test]
fn liveness_failures_restart_and_readiness_toggles_ready() {
    let name = "liveness_failures_restart_and_readiness_toggles_ready";
    if !require(name, true, &[]) {
        return;
    }
    let c = NodeCluster::start(name);
    // Readiness: an HTTP server whose /ready file comes and goes every 3 s.
    let toggling = "mkdir -p /www; httpd -p 8080 -h /www; \
        while true; do echo ok > /www/ready; sleep 3; rm -f /www/ready; sleep 3; done";
    let readiness = "    readinessProbe:\n      httpGet: {path: /ready, port: 8080}\n      periodSeconds: 1\n      failureThreshold: 1\n";
    c.apply(&(pod_yaml("ready", &c.node, toggling, "") + readiness));
    let ready_of = |p: &serde_json::Value| container_status(p, "main")["ready"].as_bool();
    c.wait_pod("ready", Duration::from_secs(30), "Ready", |p| {
        ready_of(p) == Some(true)
    });
    let unready = c.wait_pod("ready", Duration::from_secs(15), "not Ready", |p| {
        ready_of(p) == Some(false)
    });
    assert_eq!(unready["status"]["phase"], "Running");
    let cond = condition(&unready, "Ready");
    assert_eq!(cond["reason"], "ContainersNotReady", "{unready}");
    c.wait_pod("ready", Duration::from_secs(15), "Ready again", |p| {
        ready_of(p) == Some(true)
    });
    assert_eq!(
        container_status(&c.pod("ready").unwrap_or_default(), "main")["restartCount"],
        0
    );

    // Liveness: nothing listens on 9999, so the container is killed and restarted.
    let liveness = "    livenessProbe:\n      tcpSocket: {port: 9999}\n      periodSeconds: 1\n      failureThreshold: 2\n";
    c.apply(&(pod_yaml("unhealthy", &c.node, "exec sleep 3600", "") + liveness));
    let restarted = c.wait_pod("unhealthy", Duration::from_secs(40), "a restart", |p| {
        container_status(p, "main")["restartCount"].as_i64() >= Some(1)
    });
    let last = &container_status(&restarted, "main")["lastState"]["terminated"];
    assert_eq!(last["exitCode"], 137, "{restarted}");
    let events = c.init.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=unhealthy",
        "-o",
        "jsonpath={range .items[*]}{.reason}: {.message}{\"\\n\"}{end}",
    ]);
    assert!(
        events.contains("Unhealthy: Liveness probe failed: dial tcp 127.0.0.1:9999"),
        "{events}"
    );
    assert!(
        events.contains("Killing: Container main failed liveness probe, will be restarted"),
        "{events}"
    );
}

/// A pod of two containers; the second reports what it sees through its termination message.
fn two_containers(name: &str, node: &str, share_pids: bool, probe: &str) -> String {
    let img = common::pods::IMAGE;
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  nodeName: {node}
  restartPolicy: Never
  shareProcessNamespace: {share_pids}
  terminationGracePeriodSeconds: 1
  containers:
  - name: server
    image: {img}
    command: ["sh", "-c", "mkdir -p /www; echo hi-from-server > /www/index.html; exec httpd -f -p 8080 -h /www"]
  - name: probe
    image: {img}
    command: ["sh", "-c", {probe:?}]
"#
    )
}

#[test]
fn containers_share_network_and_hostname_but_not_processes() {
    let name = "containers_share_network_and_hostname_but_not_processes";
    if !require(name, true, &[]) {
        return;
    }
    let c = NodeCluster::start(name);
    let probe = "until wget -qO- http://127.0.0.1:8080/ > /tmp/page 2>/dev/null; do sleep 0.2; done; \
        echo \"page=$(cat /tmp/page) host=$(hostname) pid=$$$$ procs=$(ls -d /proc/[0-9]* | wc -l)\" > /dev/termination-log";
    c.apply(&two_containers("pair", &c.node, false, probe));
    let pod = c.wait_pod(
        "pair",
        Duration::from_secs(30),
        "the probe container to finish",
        |p| container_status(p, "probe")["state"]["terminated"].is_object(),
    );
    let t = &container_status(&pod, "probe")["state"]["terminated"];
    assert_eq!(t["exitCode"], 0, "{pod}");
    let msg = t["message"].as_str().unwrap_or("");
    assert!(
        msg.contains("page=hi-from-server"),
        "localhost is shared: {msg}"
    );
    assert!(
        msg.contains("host=pair "),
        "the hostname is the pod's name: {msg}"
    );
    assert!(
        msg.contains("pid=1 "),
        "the container's process is PID 1: {msg}"
    );
    // sh, a subshell, ls and wc at most: no host process, not the other container's httpd.
    // (`$$$$` is the shell's `$$`: Kubernetes turns `$$` into `$` in commands.)
    let procs: usize = msg
        .rsplit("procs=")
        .next()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(usize::MAX);
    assert!(procs <= 4, "only its own processes are visible: {msg}");

    // With shareProcessNamespace the second container sees the first one's httpd.
    let probe = "sleep 1; ps -o comm > /dev/termination-log";
    c.apply(&two_containers("shared", &c.node, true, probe));
    let pod = c.wait_pod(
        "shared",
        Duration::from_secs(30),
        "the probe container to finish",
        |p| container_status(p, "probe")["state"]["terminated"].is_object(),
    );
    let msg = container_status(&pod, "probe")["state"]["terminated"]["message"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(msg.contains("httpd"), "{msg}");
}

#[test]
fn limits_reach_the_cgroups_and_oom_kills_are_reported() {
    let name = "limits_reach_the_cgroups_and_oom_kills_are_reported";
    if !require(name, true, &[]) {
        return;
    }
    let c = NodeCluster::start(name);
    let device = std::fs::read_to_string("/proc/self/mountinfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.split_whitespace().nth(4) == Some("/"))
                .and_then(|l| l.split_whitespace().nth(2).map(str::to_string))
        })
        .unwrap_or_default();
    // The root filesystem's block device, for the blkio annotation.
    let dev_path = std::fs::read_dir("/dev")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            use std::os::unix::fs::{FileTypeExt, MetadataExt};
            std::fs::metadata(p).is_ok_and(|m| {
                m.file_type().is_block_device()
                    && format!("{}:{}", libc_major(m.rdev()), libc_minor(m.rdev())) == device
            })
        });
    let blkio = match &dev_path {
        Some(p) => format!(
            "  annotations:\n    blkio.skiff.dev/main: \"device-write-bps={}:1mb\"\n",
            p.display()
        ),
        None => String::new(),
    };
    let yaml = format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: limited
{blkio}spec:
  nodeName: {node}
  containers:
  - name: main
    image: {img}
    command: ["sleep", "3600"]
    resources:
      requests: {{cpu: 100m, memory: 16Mi}}
      limits: {{cpu: 200m, memory: 32Mi}}
---
apiVersion: v1
kind: Pod
metadata:
  name: hog
spec:
  nodeName: {node}
  restartPolicy: Never
  containers:
  - name: main
    image: {img}
    command: ["tail", "/dev/zero"]
    resources:
      limits: {{memory: 16Mi}}
"#,
        node = c.node,
        img = common::pods::IMAGE
    );
    c.apply(&yaml);
    let pod = c.wait_pod("limited", Duration::from_secs(30), "Running", |p| {
        p["status"]["phase"] == "Running"
    });
    assert_eq!(pod["status"]["qosClass"], "Burstable");
    let uid = pod["metadata"]["uid"].as_str().unwrap_or_default();
    let id = container_status(&pod, "main")["containerID"]
        .as_str()
        .unwrap_or_default()
        .trim_start_matches("skiff://")
        .to_string();
    let cgroup = format!("skiff/{}/kubepods/burstable/pod{uid}/{id}", c.node);
    let read = |ctrl: &str, file: &str| {
        std::fs::read_to_string(format!("/sys/fs/cgroup/{ctrl}/{cgroup}/{file}"))
            .unwrap_or_else(|e| panic!("{ctrl}/{cgroup}/{file}: {e}"))
    };
    assert_eq!(read("cpu", "cpu.cfs_quota_us").trim(), "20000");
    assert_eq!(read("cpu", "cpu.cfs_period_us").trim(), "100000");
    assert_eq!(read("cpu", "cpu.shares").trim(), "102");
    assert_eq!(
        read("memory", "memory.limit_in_bytes").trim(),
        (32u64 << 20).to_string()
    );
    // The pod's own cgroup holds the pod to the sum of its containers' limits.
    let pod_cgroup = format!("skiff/{}/kubepods/burstable/pod{uid}", c.node);
    let read_pod = |ctrl: &str, file: &str| {
        std::fs::read_to_string(format!("/sys/fs/cgroup/{ctrl}/{pod_cgroup}/{file}"))
            .unwrap_or_else(|e| panic!("{ctrl}/{pod_cgroup}/{file}: {e}"))
    };
    assert_eq!(read_pod("cpu", "cpu.cfs_quota_us").trim(), "20000");
    assert_eq!(read_pod("cpu", "cpu.shares").trim(), "102");
    assert_eq!(
        read_pod("memory", "memory.limit_in_bytes").trim(),
        (32u64 << 20).to_string()
    );
    if dev_path.is_some() {
        assert_eq!(
            read("blkio", "blkio.throttle.write_bps_device").trim(),
            format!("{device} 1048576")
        );
    }
    let hog = c.wait_pod("hog", Duration::from_secs(60), "OOMKilled", |p| {
        p["status"]["phase"] == "Failed"
    });
    let t = &container_status(&hog, "main")["state"]["terminated"];
    assert_eq!(t["reason"], "OOMKilled", "{hog}");
    assert_eq!(t["exitCode"], 137, "{hog}");
}

#[test]
fn image_users_given_by_name_come_from_the_images_passwd() {
    let name = "image_users_given_by_name_come_from_the_images_passwd";
    if !require(name, true, &[]) {
        return;
    }
    let c = NodeCluster::start(name);
    let users = LayerTar::default()
        .dir("etc/", 0o755)
        .file(
            "etc/passwd",
            0o644,
            b"root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/tmp:/bin/sh\n",
        )
        .file("etc/group", 0o644, b"root:x:0:\nstaff:x:50:\n")
        .finish();
    for (image, user) in [
        ("skiff.test/app-user:1", "app"),
        ("skiff.test/app-staff:1", "app:staff"),
        ("skiff.test/ghost:1", "ghost"),
    ] {
        let tars = vec![busybox_layer(), users.clone()];
        c.import(&TestImage::with_user(tars, user), image);
    }
    let script = "echo \"$(id -u):$(id -g)\" > /dev/termination-log";
    for (pod, image) in [
        ("app-user", "skiff.test/app-user:1"),
        ("app-staff", "skiff.test/app-staff:1"),
        ("ghost", "skiff.test/ghost:1"),
    ] {
        let yaml = pod_yaml(pod, &c.node, script, "  restartPolicy: Never\n")
            .replace(common::pods::IMAGE, image);
        c.apply(&yaml);
    }
    for (pod, ids) in [("app-user", "1000:1001"), ("app-staff", "1000:50")] {
        let p = c.wait_pod(pod, Duration::from_secs(30), "Succeeded", |p| {
            p["status"]["phase"] == "Succeeded"
        });
        let t = &container_status(&p, "main")["state"]["terminated"];
        assert_eq!(t["message"].as_str().map(str::trim), Some(ids), "{p}");
    }
    let p = c.wait_pod(
        "ghost",
        Duration::from_secs(30),
        "CreateContainerConfigError",
        |p| {
            container_status(p, "main")["state"]["waiting"]["reason"]
                == "CreateContainerConfigError"
        },
    );
    let msg = container_status(&p, "main")["state"]["waiting"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(msg.contains("unable to find user ghost"), "{msg}");
}

/// The CPUs this process may use, as `/proc/self/status` lists them.
fn cpus_allowed(status: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

#[test]
fn whole_cpus_of_guaranteed_pods_are_exclusive() {
    let name = "whole_cpus_of_guaranteed_pods_are_exclusive";
    if !require(name, true, &[]) {
        return;
    }
    let all = cpus_allowed(&std::fs::read_to_string("/proc/self/status").unwrap_or_default());
    let cpus: Vec<u32> = all
        .split(',')
        .filter_map(|part| {
            let (a, b) = part.split_once('-').unwrap_or((part, part));
            Some(a.parse().ok()?..=b.parse().ok()?)
        })
        .flatten()
        .collect();
    if cpus.len() < 2 {
        eprintln!("SKIPPED {name}: needs at least 2 CPUs, this process may use {all:?}");
        return;
    }
    let c = NodeCluster::start(name);
    let guaranteed = |pod: &str, cpu: &str| {
        let resources = format!("    resources:\n      limits: {{cpu: \"{cpu}\", memory: 32Mi}}\n");
        pod_yaml(pod, &c.node, "sleep 3600", "").replacen(
            "    command:",
            &format!("{resources}    command:"),
            1,
        )
    };
    let inside = |pod: &str| {
        let out = c
            .init
            .kubectl(&["exec", pod, "--", "cat", "/proc/1/status"]);
        cpus_allowed(&String::from_utf8_lossy(&out.stdout))
    };
    c.apply(&pod_yaml("shared", &c.node, "sleep 3600", ""));
    c.wait_pod("shared", Duration::from_secs(30), "Running", |p| {
        p["status"]["phase"] == "Running"
    });
    assert_eq!(inside("shared"), all, "a BestEffort pod runs on every CPU");

    // One whole CPU, exclusive: the highest; everything else moves off it.
    c.apply(&guaranteed("pinned", "1"));
    let pod = c.wait_pod("pinned", Duration::from_secs(30), "Running", |p| {
        p["status"]["phase"] == "Running"
    });
    assert_eq!(pod["status"]["qosClass"], "Guaranteed");
    let last = cpus.last().copied().unwrap_or_default().to_string();
    let count = cpus.len().to_string();
    assert_eq!(inside("pinned"), last);
    let uid = pod["metadata"]["uid"].as_str().unwrap_or_default();
    let id = container_status(&pod, "main")["containerID"]
        .as_str()
        .unwrap_or_default()
        .trim_start_matches("skiff://")
        .to_string();
    let cpuset = format!(
        "/sys/fs/cgroup/cpuset/skiff/{}/kubepods/pod{uid}/{id}/cpuset.cpus",
        c.node
    );
    assert_eq!(
        std::fs::read_to_string(&cpuset).unwrap_or_default().trim(),
        last
    );
    let shared_now = inside("shared");
    assert!(
        !shared_now.is_empty() && !shared_now.split(',').any(|p| p == last),
        "the shared pool no longer has CPU {last}: {shared_now}"
    );

    // Fractional CPUs are not exclusive; asking for every CPU would empty the shared pool, so
    // that pod runs on the pool with a Warning.
    c.apply(&guaranteed("fraction", "500m"));
    c.apply(&guaranteed("greedy", &count));
    for pod in ["fraction", "greedy"] {
        c.wait_pod(pod, Duration::from_secs(30), "Running", |p| {
            p["status"]["phase"] == "Running"
        });
        assert_eq!(inside(pod), shared_now, "{pod} runs on the shared pool");
    }
    let events = c.init.kubectl(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=greedy,reason=CPUsNotExclusive",
        "-o",
        "name",
    ]);
    assert!(
        !String::from_utf8_lossy(&events.stdout).trim().is_empty(),
        "a CPUsNotExclusive event for greedy"
    );

    // Deleting the exclusive pod gives its CPU back to the pods that run.
    let out = c.init.kubectl(&["delete", "pod", "pinned", "--wait=true"]);
    assert!(out.status.success(), "{out:?}");
    let mut seen = String::new();
    assert!(
        wait_until(Duration::from_secs(20), Duration::from_millis(200), || {
            seen = inside("shared");
            seen == all
        }),
        "the shared pod is back on every CPU: {seen}"
    );
}

fn libc_major(dev: u64) -> u64 {
    ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0xfff)
}

fn libc_minor(dev: u64) -> u64 {
    ((dev >> 12) & 0xffff_ff00) | (dev & 0xff)
}

#[test]
fn kubectl_logs_follow_exec_with_a_terminal_and_top() {
    let name = "kubectl_logs_follow_exec_with_a_terminal_and_top";
    if !require(name, true, &["script"]) {
        return;
    }
    let c = NodeCluster::start(name);
    let ticker = "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done";
    c.apply(&pod_yaml("ticker", &c.node, ticker, ""));
    c.wait_pod("ticker", Duration::from_secs(30), "Running", |p| {
        p["status"]["phase"] == "Running"
    });
    // logs -f keeps delivering new lines.
    let mut follow = c.init.kubectl_stream(&["logs", "-f", "ticker"]);
    let mut got = Vec::new();
    while got.len() < 8 {
        match follow.next_line(Duration::from_secs(10)) {
            Some(l) => got.push(l),
            None => panic!("logs -f stalled after {got:?}"),
        }
    }
    assert_eq!(got[0], "tick 0");
    let last: Vec<i64> = got
        .iter()
        .filter_map(|l| l.strip_prefix("tick ")?.parse().ok())
        .collect();
    assert!(last.windows(2).all(|w| w[1] == w[0] + 1), "{got:?}");

    // exec without a terminal: output and the exit code.
    let out = c.init.kubectl(&[
        "exec",
        "ticker",
        "--",
        "sh",
        "-c",
        "echo in-pod $(hostname); exit 7",
    ]);
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "in-pod ticker\n");

    // exec -it through a real terminal (script gives kubectl one).
    let cmd = format!(
        "kubectl --kubeconfig {} exec -it ticker -- sh -c 'tty; exit 3'",
        c.init.kubeconfig().display()
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("HOME", c.init.dir.path())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("script");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("/dev/pts/"), "{text}");
    assert_eq!(out.status.code(), Some(3), "{text}");

    // top pod: the agent's cgroup numbers through the metrics API.
    // The first answer may come before the agent has a usage window for the pod.
    let mut top = String::new();
    let shown = wait_until(Duration::from_secs(30), Duration::from_millis(500), || {
        let out = c.init.kubectl(&["top", "pod", "ticker", "--no-headers"]);
        top = String::from_utf8_lossy(&out.stdout).to_string();
        out.status.success() && top.starts_with("ticker")
    });
    assert!(shown, "top pod: {top}");
    let cols: Vec<&str> = top.split_whitespace().collect();
    assert!(cols[1].ends_with('m'), "{top}");
    assert!(cols[2].ends_with("Mi") || cols[2].ends_with("Ki"), "{top}");
}

#[test]
fn pre_stop_hooks_run_and_the_grace_period_is_honoured() {
    let name = "pre_stop_hooks_run_and_the_grace_period_is_honoured";
    if !require(name, true, &[]) {
        return;
    }
    let c = NodeCluster::start(name);
    let shared = c.init.dir.path().join("hook");
    std::fs::create_dir_all(&shared).expect("dir");
    let yaml = format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: hooked
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 3
  volumes:
  - name: out
    hostPath: {{path: {dir}, type: Directory}}
  containers:
  - name: main
    image: {img}
    command: ["sleep", "3600"]
    volumeMounts:
    - {{name: out, mountPath: /out}}
    lifecycle:
      preStop:
        exec:
          command: ["sh", "-c", "echo pre-stop ran > /out/hook"]
"#,
        node = c.node,
        dir = shared.display(),
        img = common::pods::IMAGE
    );
    c.apply(&yaml);
    c.wait_pod("hooked", Duration::from_secs(30), "Running", |p| {
        p["status"]["phase"] == "Running"
    });
    let started = std::time::Instant::now();
    let out = c
        .init
        .kubectl(&["delete", "pod", "hooked", "--timeout=60s"]);
    assert!(out.status.success(), "{out:?}");
    let took = started.elapsed();
    assert_eq!(
        std::fs::read_to_string(shared.join("hook")).unwrap_or_default(),
        "pre-stop ran\n"
    );
    // sleep ignores SIGTERM as PID 1: the whole grace period passes, then SIGKILL.
    assert!(
        took >= Duration::from_millis(2500) && took < Duration::from_secs(20),
        "deletion took {took:?}"
    );
}

#[test]
fn a_missing_config_map_holds_the_pod_until_it_exists() {
    let name = "a_missing_config_map_holds_the_pod_until_it_exists";
    if !require(name, true, &[]) {
        return;
    }
    let c = NodeCluster::start(name);
    let yaml = format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: configured
spec:
  nodeName: {node}
  restartPolicy: Never
  volumes:
  - name: cfg
    configMap: {{name: settings}}
  containers:
  - name: main
    image: {img}
    command: ["sh", "-c", "cat /cfg/greeting > /dev/termination-log"]
    volumeMounts:
    - {{name: cfg, mountPath: /cfg}}
"#,
        node = c.node,
        img = common::pods::IMAGE
    );
    c.apply(&yaml);
    let held = c.wait_pod("configured", Duration::from_secs(30), "held", |p| {
        container_status(p, "main")["state"]["waiting"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("configmap \"settings\" not found"))
    });
    let waiting = &container_status(&held, "main")["state"]["waiting"];
    assert_eq!(waiting["reason"], "ContainerCreating", "{held}");
    assert_eq!(
        waiting["message"],
        "MountVolume.SetUp failed for volume \"cfg\" : configmap \"settings\" not found"
    );
    assert_eq!(held["status"]["phase"], "Pending");
    c.init.ok(&[
        "create",
        "configmap",
        "settings",
        "--from-literal=greeting=hello",
    ]);
    let done = c.wait_pod("configured", Duration::from_secs(30), "Succeeded", |p| {
        p["status"]["phase"] == "Succeeded"
    });
    assert_eq!(
        container_status(&done, "main")["state"]["terminated"]["message"],
        "hello"
    );
}

#[test]
fn containers_outlive_an_agent_crash_and_are_adopted_again() {
    let name = "containers_outlive_an_agent_crash_and_are_adopted_again";
    if !require(name, true, &[]) {
        return;
    }
    let mut c = NodeCluster::start(name);
    c.apply(&pod_yaml("survivor", &c.node, "exec sleep 3600", ""));
    let before = c.wait_pod("survivor", Duration::from_secs(30), "Running", |p| {
        p["status"]["phase"] == "Running"
    });
    let id = container_status(&before, "main")["containerID"].clone();
    let started = container_status(&before, "main")["state"]["running"]["startedAt"].clone();
    let bundles = std::path::Path::new("/run/skiff")
        .join(&c.node)
        .join("runtime/bundles");
    let shim_pid = |id: &serde_json::Value| -> i32 {
        let id = id
            .as_str()
            .unwrap_or_default()
            .trim_start_matches("skiff://");
        std::fs::read_to_string(bundles.join(id).join("shim.pid"))
            .ok()
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or(0)
    };
    let pid = shim_pid(&id);
    assert!(pid > 0);
    c.init.kill();
    // The container's shim (and so the container) is still there with the agent gone.
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    c.init.restart();
    // Re-adopted: the same instance, no restart, no second container.
    let adopted = wait_until(Duration::from_secs(15), Duration::from_millis(100), || {
        c.init.log().contains("re-adopted container")
    });
    assert!(
        adopted,
        "the new agent did not adopt the container:\n{}",
        c.init.log()
    );
    let after = c.pod("survivor").expect("pod");
    let st = container_status(&after, "main");
    assert_eq!(st["containerID"], id, "{after}");
    assert_eq!(st["restartCount"], 0, "{after}");
    assert_eq!(st["state"]["running"]["startedAt"], started, "{after}");
    let containers = std::fs::read_dir(&bundles).map(|d| d.count()).unwrap_or(0);
    assert_eq!(containers, 1, "one container, not a duplicate");
    // The re-adopted agent still manages it: deletion stops it.
    c.init
        .ok(&["delete", "pod", "survivor", "--grace-period=1"]);
    c.wait_gone("survivor", Duration::from_secs(20));
    assert!(
        wait_until(Duration::from_secs(15), Duration::from_millis(100), || {
            !std::path::Path::new(&format!("/proc/{pid}")).exists()
        }),
        "the shim ended"
    );
}

#[test]
fn local_path_claims_keep_data_across_pods_until_deleted() {
    let name = "local_path_claims_keep_data_across_pods_until_deleted";
    if !require(name, true, &[]) {
        return;
    }
    let c = NodeCluster::start(name);
    let pod = |pod: &str, script: &str| {
        format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: {pod}
spec:
  nodeName: {node}
  restartPolicy: Never
  volumes:
  - name: data
    persistentVolumeClaim: {{claimName: store}}
  containers:
  - name: main
    image: {img}
    command: ["sh", "-c", {script:?}]
    volumeMounts:
    - {{name: data, mountPath: /data}}
"#,
            node = c.node,
            img = common::pods::IMAGE
        )
    };
    c.apply(
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: store\nspec:\n  accessModes: [ReadWriteOnce]\n  resources:\n    requests:\n      storage: 1Gi\n",
    );
    c.apply(&pod("writer", "echo kept > /data/file"));
    c.wait_pod("writer", Duration::from_secs(30), "Succeeded", |p| {
        p["status"]["phase"] == "Succeeded"
    });
    let claim: serde_json::Value =
        serde_json::from_str(&c.init.ok(&["get", "pvc", "store", "-o", "json"])).expect("json");
    assert_eq!(claim["status"]["phase"], "Bound", "{claim}");
    let volume = claim["spec"]["volumeName"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let pv: serde_json::Value =
        serde_json::from_str(&c.init.ok(&["get", "pv", &volume, "-o", "json"])).expect("json");
    assert_eq!(pv["spec"]["claimRef"]["name"], "store", "{pv}");
    assert_eq!(pv["spec"]["storageClassName"], "local-path");
    let dir = pv["spec"]["hostPath"]["path"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(
        std::fs::read_to_string(format!("{dir}/file")).unwrap_or_default(),
        "kept\n"
    );

    // A later pod sees what the first one wrote.
    c.init.ok(&["delete", "pod", "writer"]);
    c.apply(&pod("reader", "cat /data/file > /dev/termination-log"));
    let read = c.wait_pod("reader", Duration::from_secs(30), "Succeeded", |p| {
        p["status"]["phase"] == "Succeeded"
    });
    assert_eq!(
        container_status(&read, "main")["state"]["terminated"]["message"],
        "kept\n"
    );

    // Deleting the claim deletes the volume and its data.
    c.init.ok(&["delete", "pod", "reader"]);
    c.init.ok(&["delete", "pvc", "store"]);
    let gone = wait_until(Duration::from_secs(40), Duration::from_millis(200), || {
        !c.init.kubectl(&["get", "pv", &volume]).status.success()
            && !std::path::Path::new(&dir).exists()
    });
    assert!(gone, "volume {volume} or {dir} still there");
}

#[test]
fn pods_pull_by_tag_and_digest_with_a_pull_secret() {
    let name = "pods_pull_by_tag_and_digest_with_a_pull_secret";
    if !require(name, true, &["docker-registry", "htpasswd"]) {
        return;
    }
    let c = NodeCluster::start(name);
    let registry = common::images::Registry::start_with_basic_auth(name, "puller", "s3cret-pass");
    let image = common::images::TestImage::new(vec![common::images::busybox_layer()]);
    registry.push("team/busybox", "v1", &image);
    let by_tag = registry.reference("team/busybox", "v1");
    let by_digest = format!("{}/team/busybox@{}", registry.addr, image.manifest.digest);
    c.init.ok(&[
        "create",
        "secret",
        "docker-registry",
        "regcred",
        &format!("--docker-server={}", registry.addr),
        "--docker-username=puller",
        "--docker-password=s3cret-pass",
    ]);
    // Every pod pulls (Always), so the one without the secret cannot use the copy the others
    // pulled: with IfNotPresent it would, as upstream.
    let pod = |pod: &str, image: &str, secret: bool| {
        let secrets = if secret {
            "  imagePullSecrets:\n  - name: regcred\n"
        } else {
            ""
        };
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {pod}\nspec:\n  nodeName: {node}\n{secrets}  containers:\n  - name: main\n    image: {image}\n    imagePullPolicy: Always\n    command: [\"sleep\", \"3600\"]\n",
            node = c.node
        )
    };
    c.apply(&pod("tagged", &by_tag, true));
    c.apply(&pod("pinned", &by_digest, true));
    c.apply(&pod("anonymous", &by_tag, false));
    c.apply(&pod(
        "missing-tag",
        &registry.reference("team/busybox", "nope"),
        true,
    ));
    for p in ["tagged", "pinned"] {
        let running = c.wait_pod(p, Duration::from_secs(60), "Running", |p| {
            p["status"]["phase"] == "Running"
        });
        let id = container_status(&running, "main")["imageID"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(id.ends_with(&image.manifest.digest), "{id}");
    }
    // Without the secret the registry refuses; a tag it does not have is not found.
    let refused = c.watch_waiting("anonymous", "ErrImagePull", Duration::from_secs(40));
    assert!(refused.contains("requires authentication"), "{refused}");

    let missing = c.watch_waiting("missing-tag", "ErrImagePull", Duration::from_secs(40));
    assert!(missing.contains("nope"), "{missing}");
    c.watch_waiting("missing-tag", "ImagePullBackOff", Duration::from_secs(40));
}

#[test]
fn seccomp_profiles_filter_syscalls() {
    let name = "seccomp_profiles_filter_syscalls";
    if !require(name, true, &[]) {
        return;
    }
    let c = NodeCluster::start(name);
    let profiles = c.init.dir.path().join("data/agent/seccomp");
    std::fs::create_dir_all(&profiles).unwrap();
    std::fs::write(
        profiles.join("deny-chmod.json"),
        br#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["chmod","fchmod","fchmodat","fchmodat2"],"action":"SCMP_ACT_ERRNO"}]}"#,
    )
    .unwrap();
    // Each pod reports whether a new user namespace (no capability needed, blocked by the
    // runtime default) and a chmod (blocked by the Localhost profile) were allowed.
    let script = "r=; if unshare -U true 2>/dev/null; then r=userns-ok; else r=userns-denied; fi; \
                  touch /tmp/f; if chmod 600 /tmp/f 2>/dev/null; then r=\"$r chmod-ok\"; \
                  else r=\"$r chmod-denied\"; fi; echo $r > /dev/termination-log";
    let profile = |p: &str| format!("  securityContext:\n    seccompProfile:\n{p}");
    for (pod, extra) in [
        ("unconfined", String::new()),
        ("runtime-default", profile("      type: RuntimeDefault\n")),
        (
            "localhost",
            profile("      type: Localhost\n      localhostProfile: deny-chmod.json\n"),
        ),
        (
            "missing",
            profile("      type: Localhost\n      localhostProfile: nope.json\n"),
        ),
    ] {
        let extra = format!("  restartPolicy: Never\n{extra}");
        c.apply(&pod_yaml(pod, &c.node, script, &extra));
    }
    for (pod, want) in [
        ("unconfined", "userns-ok chmod-ok"),
        ("runtime-default", "userns-denied chmod-ok"),
        ("localhost", "userns-ok chmod-denied"),
    ] {
        let p = c.wait_pod(pod, Duration::from_secs(30), "Succeeded", |p| {
            p["status"]["phase"] == "Succeeded"
        });
        let t = &container_status(&p, "main")["state"]["terminated"];
        assert_eq!(
            t["message"].as_str().map(str::trim),
            Some(want),
            "{pod}: {p}"
        );
    }
    let p = c.wait_pod(
        "missing",
        Duration::from_secs(30),
        "CreateContainerConfigError",
        |p| {
            container_status(p, "main")["state"]["waiting"]["reason"]
                == "CreateContainerConfigError"
        },
    );
    let msg = container_status(&p, "main")["state"]["waiting"]["message"].to_string();
    assert!(msg.contains("failed to load seccomp profile"), "{msg}");
}

#[test]
fn tty_containers_run_on_a_terminal_and_log_its_output() {
    let name = "tty_containers_run_on_a_terminal_and_log_its_output";
    if !require(name, true, &[]) {
        return;
    }
    let c = NodeCluster::start(name);
    let yaml = pod_yaml(
        "tty",
        &c.node,
        "tty; [ -t 0 ] && [ -t 1 ] && echo stdio-is-a-terminal; echo done",
        "  restartPolicy: Never\n",
    )
    .replace("    command:", "    tty: true\n    command:");
    c.apply(&yaml);
    c.wait_pod("tty", Duration::from_secs(30), "Succeeded", |p| {
        p["status"]["phase"] == "Succeeded"
    });
    let logs = c.init.ok(&["logs", "tty"]);
    assert!(logs.contains("/dev/pts/"), "{logs}");
    assert!(logs.contains("stdio-is-a-terminal"), "{logs}");
    assert!(logs.contains("done"), "{logs}");
}
