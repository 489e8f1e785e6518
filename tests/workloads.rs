//! The workload controllers inside `skiff init`, as kubectl sees them: a DaemonSet runs one pod
//! per eligible node (none on a tainted one) and rolls out; a Job with completions 5 and
//! parallelism 2 completes with at most 2 pods active and `kubectl wait --for=condition=complete`
//! returns; a CronJob `*/1 * * * *` creates its Job within a minute, and `kubectl create job
//! --from=cronjob/x` works; a StatefulSet creates its pods in order, each after the previous is
//! Ready, with claims from its templates, scales down in reverse order and rolls out.
//!
//! Without root there is no node agent: a "hollow kubelet" thread plays the node, marking pods
//! bound to a hollow node Running and Ready through pods/status, and pods labelled
//! `hollow/complete` Succeeded one step later, as a kubelet would report them. Templates set
//! `terminationGracePeriodSeconds: 0` so deleted pods go at once.

mod common;

use common::cluster::*;
use common::control_plane::{api_json, Init};
use serde_json::Value;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(90);
const POLL: Duration = Duration::from_millis(200);

fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

fn now_rfc3339() -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .expect("date");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Plays the kubelet of `nodes`: bound pods become Running and Ready; those labelled
/// `hollow/complete` then Succeed. Records the most pods of one label value `job-name` that
/// were ever running at once.
struct HollowKubelet {
    stop: Arc<AtomicBool>,
    max_running: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HollowKubelet {
    fn start(init: &Init, nodes: &[&str]) -> HollowKubelet {
        let stop = Arc::new(AtomicBool::new(false));
        let max_running = Arc::new(AtomicUsize::new(0));
        let nodes: HashSet<String> = nodes.iter().map(|n| n.to_string()).collect();
        let (pki, api, flag, max) = (
            init.pki(),
            init.api.clone(),
            stop.clone(),
            max_running.clone(),
        );
        let thread = std::thread::spawn(move || {
            let mut beat = std::time::Instant::now() - Duration::from_secs(60);
            while !flag.load(Ordering::Relaxed) {
                // Node heartbeats, so the node lifecycle controller keeps the nodes Ready.
                if beat.elapsed() > Duration::from_secs(5) {
                    beat = std::time::Instant::now();
                    for n in &nodes {
                        let path = format!("/api/v1/nodes/{n}/status");
                        api_json(&pki, &api, "PATCH", &path, Some(&node_status()));
                    }
                }
                let pods = api_json(&pki, &api, "GET", "/api/v1/pods", None);
                let list = pods["items"].as_array().cloned().unwrap_or_default();
                // Non-terminal pods of Jobs, per Job.
                let mut per_job: std::collections::HashMap<String, usize> = Default::default();
                for pod in &list {
                    let phase = pod["status"]["phase"].as_str().unwrap_or("");
                    if let Some(j) = pod["metadata"]["labels"]["job-name"].as_str() {
                        if phase != "Succeeded"
                            && phase != "Failed"
                            && pod["metadata"]["deletionTimestamp"].is_null()
                        {
                            *per_job.entry(j.to_string()).or_default() += 1;
                        }
                    }
                }
                if let Some(m) = per_job.values().max() {
                    max.fetch_max(*m, Ordering::Relaxed);
                }
                for pod in &list {
                    let node = pod["spec"]["nodeName"].as_str().unwrap_or("");
                    if !nodes.contains(node) || !pod["metadata"]["deletionTimestamp"].is_null() {
                        continue;
                    }
                    let (ns, name) = (
                        pod["metadata"]["namespace"].as_str().unwrap_or_default(),
                        pod["metadata"]["name"].as_str().unwrap_or_default(),
                    );
                    let phase = pod["status"]["phase"].as_str().unwrap_or("");
                    let completes = !pod["metadata"]["labels"]["hollow/complete"].is_null();
                    let now = now_rfc3339();
                    let status = if phase == "Running" && completes {
                        format!(
                            r#"{{"status":{{"phase":"Succeeded","conditions":[{{"type":"Ready","status":"False","reason":"PodCompleted","lastTransitionTime":"{now}"}}],"containerStatuses":[{{"name":"c","image":"busybox","imageID":"","ready":false,"restartCount":0,"state":{{"terminated":{{"exitCode":0,"reason":"Completed","finishedAt":"{now}"}}}}}}]}}}}"#
                        )
                    } else if phase != "Succeeded" && phase != "Failed" && !is_ready(pod) {
                        format!(
                            r#"{{"status":{{"phase":"Running","conditions":[{{"type":"Ready","status":"True","lastTransitionTime":"{now}"}},{{"type":"ContainersReady","status":"True","lastTransitionTime":"{now}"}}],"containerStatuses":[{{"name":"c","image":"busybox","imageID":"","ready":true,"restartCount":0,"state":{{"running":{{"startedAt":"{now}"}}}}}}]}}}}"#
                        )
                    } else {
                        continue;
                    };
                    api_json(
                        &pki,
                        &api,
                        "PATCH",
                        &format!("/api/v1/namespaces/{ns}/pods/{name}/status"),
                        Some(&status),
                    );
                }
                // The polling period of a simulated node, not a synchronisation.
                std::thread::sleep(Duration::from_millis(150));
            }
        });
        HollowKubelet {
            stop,
            max_running,
            thread: Some(thread),
        }
    }
}

impl Drop for HollowKubelet {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn get_json(init: &Init, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    let out = init.ok(&all);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("kubectl {args:?}: {e}: {out}"))
}

fn items(init: &Init, args: &[&str]) -> Vec<Value> {
    get_json(init, args)["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn names(list: &[Value]) -> Vec<String> {
    let mut n: Vec<String> = list
        .iter()
        .filter_map(|o| o["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    n.sort();
    n
}

fn apply(init: &Init, yaml: &str) {
    check_ok(
        "kubectl apply",
        &init.kubectl_in(&["apply", "-f", "-"], Some(yaml.as_bytes())),
    );
}

fn wait(what: &str, init: &Init, mut cond: impl FnMut() -> bool) {
    assert!(
        wait_until(WAIT, POLL, &mut cond),
        "timed out waiting for {what}\n{}",
        init.log()
            .lines()
            .rev()
            .take(60)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

fn live(list: Vec<Value>) -> Vec<Value> {
    list.into_iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .collect()
}

/// A Ready Node with room for pods; `taint` adds a NoSchedule taint `dedicated=x`.
fn create_node(init: &Init, name: &str, taint: bool) {
    let taints = if taint {
        "  taints: [{key: dedicated, value: x, effect: NoSchedule}]\n"
    } else {
        ""
    };
    let yaml = format!(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\n  labels: {{kubernetes.io/hostname: {name}, kubernetes.io/os: linux}}\nspec:\n{taints}"
    );
    let yaml = if taint {
        yaml
    } else {
        yaml.replace("spec:\n", "spec: {}\n")
    };
    check_ok(
        "kubectl create node",
        &init.kubectl_in(&["create", "-f", "-"], Some(yaml.as_bytes())),
    );
    init.ok(&[
        "patch",
        "node",
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        &node_status(),
    ]);
}

/// A Ready node's status with a fresh heartbeat.
fn node_status() -> String {
    let now = now_rfc3339();
    format!(
        r#"{{"status":{{"capacity":{{"cpu":"8","memory":"16Gi","pods":"110"}},"allocatable":{{"cpu":"8","memory":"16Gi","pods":"110"}},"conditions":[{{"type":"Ready","status":"True","reason":"KubeletReady","message":"hollow","lastHeartbeatTime":"{now}","lastTransitionTime":"{now}"}}]}}}}"#
    )
}

/// The node a daemon pod is for: its binding, or its affinity's `metadata.name`.
fn target_node(pod: &Value) -> String {
    if let Some(n) = pod["spec"]["nodeName"].as_str() {
        return n.to_string();
    }
    pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        ["nodeSelectorTerms"][0]["matchFields"][0]["values"][0]
        .as_str()
        .unwrap_or("")
        .to_string()
}

#[test]
fn daemonset_runs_one_pod_per_eligible_node_and_rolls_out() {
    let name = "daemonset_one_pod_per_node";
    if !require_tool(name, "kubectl") {
        return;
    }
    let init = Init::start(name);
    create_node(&init, "ds-a", false);
    create_node(&init, "ds-b", false);
    create_node(&init, "ds-tainted", true);
    let _kubelet = HollowKubelet::start(&init, &["ds-a", "ds-b", "ds-tainted"]);
    let ds = |image: &str| {
        format!(
            r#"apiVersion: apps/v1
kind: DaemonSet
metadata: {{name: agent}}
spec:
  selector: {{matchLabels: {{app: agent}}}}
  template:
    metadata: {{labels: {{app: agent}}}}
    spec:
      terminationGracePeriodSeconds: 0
      containers: [{{name: c, image: {image}}}]
"#
        )
    };
    apply(&init, &ds("busybox:1"));
    // Exactly one pod on each untainted node (ignoring this control plane's own Node, which
    // has no kubelet without root), none on the tainted one.
    wait("one daemon pod per eligible node, bound", &init, || {
        let pods = live(items(&init, &["get", "pods", "-l", "app=agent"]));
        let mut nodes: Vec<String> = pods
            .iter()
            .map(target_node)
            .filter(|n| n.starts_with("ds-"))
            .collect();
        nodes.sort();
        nodes == ["ds-a", "ds-b"]
            && pods
                .iter()
                .filter(|p| target_node(p).starts_with("ds-"))
                .all(|p| p["spec"]["nodeName"].is_string())
    });
    let pods = live(items(&init, &["get", "pods", "-l", "app=agent"]));
    for p in &pods {
        let tols: Vec<String> = p["spec"]["tolerations"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["key"].as_str().map(str::to_string))
            .collect();
        assert!(
            tols.iter().any(|t| t == "node.kubernetes.io/unschedulable"),
            "{p}"
        );
        assert!(
            tols.iter().any(|t| t == "node.kubernetes.io/not-ready"),
            "{p}"
        );
        assert!(
            p["metadata"]["labels"]["controller-revision-hash"].is_string(),
            "{p}"
        );
        assert_eq!(p["metadata"]["ownerReferences"][0]["kind"], "DaemonSet");
        assert_ne!(target_node(p), "ds-tainted");
    }
    let revs = items(&init, &["get", "controllerrevisions"]);
    assert_eq!(revs.len(), 1, "{revs:?}");
    // Status as `rollout status` reads it; the control plane's own Node counts when it exists.
    let own_node = init.kubectl(&["get", "node", &init.node]).status.success();
    if !own_node {
        let out = init.ok(&["rollout", "status", "ds/agent", "--timeout=90s"]);
        assert!(out.contains("successfully rolled out"), "{out}");
        let ds_json = get_json(&init, &["get", "ds", "agent"]);
        assert_eq!(ds_json["status"]["desiredNumberScheduled"], 2, "{ds_json}");
        assert_eq!(ds_json["status"]["numberReady"], 2, "{ds_json}");
        assert_eq!(ds_json["status"]["numberMisscheduled"], 0, "{ds_json}");

        // A new template rolls out: every pod replaced, one revision more.
        apply(&init, &ds("busybox:2"));
        let out = init.ok(&["rollout", "status", "ds/agent", "--timeout=90s"]);
        assert!(out.contains("successfully rolled out"), "{out}");
        wait("old pods gone", &init, || {
            let pods = live(items(&init, &["get", "pods", "-l", "app=agent"]));
            pods.len() == 2
                && pods
                    .iter()
                    .all(|p| p["spec"]["containers"][0]["image"] == "busybox:2")
        });
        assert_eq!(items(&init, &["get", "controllerrevisions"]).len(), 2);
    }

    // Removing the taint makes the third node eligible.
    init.ok(&["taint", "node", "ds-tainted", "dedicated-"]);
    wait("a pod on the untainted node", &init, || {
        live(items(&init, &["get", "pods", "-l", "app=agent"]))
            .iter()
            .any(|p| target_node(p) == "ds-tainted")
    });
}

#[test]
fn job_completes_with_bounded_parallelism_and_kubectl_wait_returns() {
    let name = "job_completes";
    if !require_tool(name, "kubectl") {
        return;
    }
    let init = Init::start(name);
    let kubelet = HollowKubelet::start(&init, &["hollow-job"]);
    apply(
        &init,
        r#"apiVersion: batch/v1
kind: Job
metadata: {name: pi}
spec:
  completions: 5
  parallelism: 2
  template:
    metadata: {labels: {hollow/complete: "yes"}}
    spec:
      nodeName: hollow-job
      restartPolicy: Never
      terminationGracePeriodSeconds: 0
      containers: [{name: c, image: busybox}]
"#,
    );
    let out = init.ok(&[
        "wait",
        "--for=condition=complete",
        "job/pi",
        "--timeout=90s",
    ]);
    assert!(out.contains("condition met"), "{out}");
    let job = get_json(&init, &["get", "job", "pi"]);
    let st = &job["status"];
    assert_eq!(st["succeeded"], 5, "{job}");
    assert!(st["active"].is_null() || st["active"] == 0, "{job}");
    assert!(
        st["startTime"].is_string() && st["completionTime"].is_string(),
        "{job}"
    );
    let types: Vec<&str> = st["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["status"] == "True")
        .filter_map(|c| c["type"].as_str())
        .collect();
    assert!(
        types.contains(&"SuccessCriteriaMet") && types.contains(&"Complete"),
        "{job}"
    );
    let max = kubelet.max_running.load(Ordering::Relaxed);
    assert!(
        (1..=2).contains(&max),
        "at most 2 pods active at once, saw {max}"
    );

    // Pods: <job>-<5 chars>, Job labels, no finalizer left once counted.
    let pods = items(&init, &["get", "pods", "-l", "job-name=pi"]);
    assert_eq!(pods.len(), 5, "{pods:?}");
    for p in &pods {
        let n = p["metadata"]["name"].as_str().unwrap_or("");
        assert!(n.starts_with("pi-") && n.len() == 8, "{n}");
        assert!(
            p["metadata"]["labels"]["batch.kubernetes.io/controller-uid"].is_string(),
            "{p}"
        );
        assert!(
            p["metadata"]["finalizers"]
                .as_array()
                .is_none_or(|f| f.is_empty()),
            "{p}"
        );
    }
    let events = init.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=pi",
    ]);
    assert!(
        events.contains("SuccessfulCreate") && events.contains("Completed"),
        "{events}"
    );

    // A Job whose pods fail beyond its backoff limit fails.
    apply(
        &init,
        r#"apiVersion: batch/v1
kind: Job
metadata: {name: doomed}
spec:
  backoffLimit: 0
  template:
    spec:
      nodeName: nowhere
      restartPolicy: Never
      terminationGracePeriodSeconds: 0
      containers: [{name: c, image: busybox}]
"#,
    );
    let mut pod = String::new();
    wait("the doomed job's pod", &init, || {
        pod = names(&items(&init, &["get", "pods", "-l", "job-name=doomed"]))
            .first()
            .cloned()
            .unwrap_or_default();
        !pod.is_empty()
    });
    init.ok(&[
        "patch",
        "pod",
        &pod,
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"phase":"Failed"}}"#,
    ]);
    let out = init.ok(&[
        "wait",
        "--for=condition=failed",
        "job/doomed",
        "--timeout=60s",
    ]);
    assert!(out.contains("condition met"), "{out}");
    let job = get_json(&init, &["get", "job", "doomed"]);
    let failed = job["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Failed")
        .cloned()
        .unwrap_or_default();
    assert_eq!(failed["reason"], "BackoffLimitExceeded", "{job}");
    assert_eq!(job["status"]["failed"], 1, "{job}");

    // ttlSecondsAfterFinished removes a finished Job.
    init.ok(&[
        "patch",
        "job",
        "pi",
        "--type=merge",
        "-p",
        r#"{"spec":{"ttlSecondsAfterFinished":0}}"#,
    ]);
    wait("the finished job deleted", &init, || {
        !init.kubectl(&["get", "job", "pi"]).status.success()
    });
}

#[test]
fn cronjob_creates_jobs_on_schedule_and_from_kubectl() {
    let name = "cronjob_fires";
    if !require_tool(name, "kubectl") {
        return;
    }
    let init = Init::start(name);
    let _kubelet = HollowKubelet::start(&init, &["hollow-cron"]);
    apply(
        &init,
        r#"apiVersion: batch/v1
kind: CronJob
metadata: {name: tick}
spec:
  schedule: "*/1 * * * *"
  jobTemplate:
    spec:
      template:
        metadata: {labels: {hollow/complete: "yes"}}
        spec:
          nodeName: hollow-cron
          restartPolicy: Never
          terminationGracePeriodSeconds: 0
          containers: [{name: c, image: busybox}]
"#,
    );
    // Client-side: a Job from the CronJob's template at once.
    init.ok(&["create", "job", "--from=cronjob/tick", "tick-manual"]);
    let out = init.ok(&[
        "wait",
        "--for=condition=complete",
        "job/tick-manual",
        "--timeout=60s",
    ]);
    assert!(out.contains("condition met"), "{out}");
    // The schedule fires within a minute (plus slack).
    let mut job = Value::Null;
    assert!(
        wait_until(Duration::from_secs(75), Duration::from_millis(500), || {
            job = items(&init, &["get", "jobs"])
                .into_iter()
                // kubectl's `--from=cronjob` Job names the CronJob as its owner too.
                .find(|j| {
                    j["metadata"]["ownerReferences"][0]["kind"] == "CronJob"
                        && j["metadata"]["name"] != "tick-manual"
                })
                .unwrap_or(Value::Null);
            !job.is_null()
        }),
        "no scheduled Job within 75 s\n{}",
        init.log()
    );
    let jname = job["metadata"]["name"].as_str().unwrap_or("").to_string();
    let minutes = jname
        .strip_prefix("tick-")
        .and_then(|m| m.parse::<i64>().ok())
        .unwrap_or(0);
    assert!(minutes > 28_000_000, "{jname}");
    let stamp = job["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(stamp.ends_with(":00Z"), "{job}");
    wait("lastScheduleTime and the job completed", &init, || {
        let cj = get_json(&init, &["get", "cronjob", "tick"]);
        cj["status"]["lastScheduleTime"].as_str() == Some(stamp.as_str())
            && cj["status"]["lastSuccessfulTime"].is_string()
    });
    let events = init.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=tick",
    ]);
    assert!(events.contains("SuccessfulCreate"), "{events}");
}

#[test]
fn statefulset_creates_pods_in_order_scales_down_in_reverse_and_rolls_out() {
    let name = "statefulset_ordered";
    if !require_tool(name, "kubectl") {
        return;
    }
    let init = Init::start(name);
    let sts = |image: &str, replicas: u32| {
        format!(
            r#"apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: web}}
spec:
  serviceName: nginx
  replicas: {replicas}
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      nodeName: hollow-sts
      terminationGracePeriodSeconds: 0
      containers: [{{name: c, image: {image}}}]
  volumeClaimTemplates:
  - metadata: {{name: www}}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {{requests: {{storage: 1Gi}}}}
"#
        )
    };
    apply(&init, &sts("nginx:1", 3));
    let ready = |pod: &str| {
        init.ok(&[
            "patch",
            "pod",
            pod,
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"phase":"Running","conditions":[{"type":"Ready","status":"True"}]}}"#,
        ]);
    };
    let pod_names = || names(&live(items(&init, &["get", "pods", "-l", "app=web"])));
    // Played by hand: each pod appears only once the one before it is Ready.
    wait("web-0", &init, || pod_names() == ["web-0"]);
    assert!(init.kubectl(&["get", "pvc", "www-web-0"]).status.success());
    let p0 = get_json(&init, &["get", "pod", "web-0"]);
    assert_eq!(
        p0["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"],
        "web-0"
    );
    assert_eq!(
        p0["metadata"]["labels"]["apps.kubernetes.io/pod-index"],
        "0"
    );
    assert_eq!(p0["spec"]["hostname"], "web-0");
    assert_eq!(p0["spec"]["subdomain"], "nginx");
    assert!(p0["spec"]["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|v| v["persistentVolumeClaim"]["claimName"] == "www-web-0"));
    assert_eq!(
        pod_names(),
        ["web-0"],
        "web-1 must wait for web-0 to be Ready"
    );
    ready("web-0");
    wait("web-1", &init, || pod_names() == ["web-0", "web-1"]);
    assert_eq!(
        pod_names(),
        ["web-0", "web-1"],
        "web-2 must wait for web-1 to be Ready"
    );
    ready("web-1");
    wait("web-2", &init, || {
        pod_names() == ["web-0", "web-1", "web-2"]
    });
    ready("web-2");
    let out = init.ok(&["rollout", "status", "sts/web", "--timeout=60s"]);
    assert!(
        out.contains("roll out complete") || out.contains("rolling update complete"),
        "{out}"
    );

    // Scale down: web-2 goes first, claims stay.
    init.ok(&["scale", "sts/web", "--replicas=1"]);
    wait("scaled down to web-0", &init, || {
        let now = pod_names();
        let has = |n: &str| now.iter().any(|p| p == n);
        assert!(
            !has("web-2") || has("web-1"),
            "web-1 went before web-2: {now:?}"
        );
        now == ["web-0"]
    });
    for c in ["www-web-0", "www-web-1", "www-web-2"] {
        assert!(
            init.kubectl(&["get", "pvc", c]).status.success(),
            "claim {c} kept"
        );
    }
    let events = init.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=web",
    ]);
    assert!(
        events.contains("delete Pod web-2") && events.contains("create Pod web-0"),
        "{events}"
    );

    // A new template rolls out with the hollow kubelet playing the node.
    let _kubelet = HollowKubelet::start(&init, &["hollow-sts"]);
    apply(&init, &sts("nginx:2", 2));
    let out = init.ok(&["rollout", "status", "sts/web", "--timeout=90s"]);
    assert!(out.contains("complete"), "{out}");
    let st = get_json(&init, &["get", "sts", "web"]);
    assert_eq!(
        st["status"]["currentRevision"], st["status"]["updateRevision"],
        "{st}"
    );
    assert_eq!(st["status"]["updatedReplicas"], 2, "{st}");
    for p in live(items(&init, &["get", "pods", "-l", "app=web"])) {
        assert_eq!(p["spec"]["containers"][0]["image"], "nginx:2", "{p}");
    }
}
