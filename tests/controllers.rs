//! The controller manager inside `skiff init`, as kubectl sees it: Deployments roll out
//! (`rollout status`, `history`, `undo`, `pause`/`resume`, `scale`), ReplicaSets keep their pods
//! (adopting orphans, releasing pods that stop matching), and the garbage collector removes
//! dependents in the background, in the foreground, or orphans them.
//!
//! Without root `skiff init` runs no node agent, so a "hollow kubelet" here plays the node:
//! pods are created already bound to `hollow-node` (spec.nodeName in the template, so the
//! scheduler has nothing to do) and the hollow kubelet marks them Running and Ready through
//! pods/status, as a kubelet would. Templates set `terminationGracePeriodSeconds: 0`, so a
//! deleted pod goes at once instead of waiting for a kubelet that is not there.

mod common;

use common::cluster::*;
use common::control_plane::{api_json, Init};
use common::images::stderr_str;
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const HOLLOW_NODE: &str = "hollow-node";
const WAIT: Duration = Duration::from_secs(90);
const POLL: Duration = Duration::from_millis(200);

/// Marks every pod bound to [`HOLLOW_NODE`] Running and Ready, until dropped.
struct HollowKubelet {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

impl HollowKubelet {
    fn start(init: &Init) -> HollowKubelet {
        let stop = Arc::new(AtomicBool::new(false));
        let (pki, api, flag) = (init.pki(), init.api.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                let pods = api_json(&pki, &api, "GET", "/api/v1/pods", None);
                for pod in pods["items"].as_array().into_iter().flatten() {
                    if pod["spec"]["nodeName"] != HOLLOW_NODE
                        || is_ready(pod)
                        || !pod["metadata"]["deletionTimestamp"].is_null()
                    {
                        continue;
                    }
                    let (ns, name) = (
                        pod["metadata"]["namespace"].as_str().unwrap_or_default(),
                        pod["metadata"]["name"].as_str().unwrap_or_default(),
                    );
                    let status = r#"{"status":{"phase":"Running","conditions":[{"type":"Ready","status":"True"},{"type":"ContainersReady","status":"True"}]}}"#;
                    api_json(
                        &pki,
                        &api,
                        "PATCH",
                        &format!("/api/v1/namespaces/{ns}/pods/{name}/status"),
                        Some(status),
                    );
                }
                // The polling period of a simulated node, not a synchronisation.
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        HollowKubelet {
            stop,
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

fn deployment(name: &str, replicas: u32, image: &str, extra_spec: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  annotations:
    kubernetes.io/change-cause: "image {image}"
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: {name}}}
{extra_spec}  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      nodeName: {HOLLOW_NODE}
      terminationGracePeriodSeconds: 0
      containers:
      - name: app
        image: {image}
"#
    )
}

fn apply(init: &Init, yaml: &str) {
    check_ok(
        "kubectl apply",
        &init.kubectl_in(&["apply", "-f", "-"], Some(yaml.as_bytes())),
    );
}

fn rollout_status(init: &Init, name: &str) -> String {
    init.ok(&[
        "rollout",
        "status",
        &format!("deployment/{name}"),
        "--timeout=90s",
    ])
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

fn replicasets_of(init: &Init, app: &str) -> Vec<Value> {
    items(init, &["get", "rs", "-l", &format!("app={app}")])
}

fn pods_of(init: &Init, app: &str) -> Vec<Value> {
    items(init, &["get", "pods", "-l", &format!("app={app}")])
}

fn revision(rs: &Value) -> &str {
    rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
        .as_str()
        .unwrap_or("")
}

#[test]
fn deployment_rolls_out_scales_undoes_pauses_and_is_deleted_with_its_pods() {
    let name = "deployment_rolls_out";
    if !require_tool(name, "kubectl") {
        return;
    }
    let init = Init::start(name);
    let _kubelet = HollowKubelet::start(&init);

    apply(&init, &deployment("web", 3, "nginx:1", ""));
    let out = rollout_status(&init, "web");
    assert!(
        out.contains("deployment \"web\" successfully rolled out"),
        "{out}"
    );

    // One ReplicaSet web-<hash>, its pods web-<hash>-<5 chars>, controlled by it.
    let rss = replicasets_of(&init, "web");
    assert_eq!(rss.len(), 1, "{rss:?}");
    let first = &rss[0];
    let hash = first["metadata"]["labels"]["pod-template-hash"]
        .as_str()
        .unwrap_or("");
    assert!(!hash.is_empty(), "{first}");
    let first_name = first["metadata"]["name"].as_str().unwrap_or("").to_string();
    assert_eq!(first_name, format!("web-{hash}"));
    assert_eq!(
        first["spec"]["selector"]["matchLabels"]["pod-template-hash"],
        hash
    );
    assert_eq!(
        first["spec"]["template"]["metadata"]["labels"]["pod-template-hash"],
        hash
    );
    assert_eq!(revision(first), "1");
    assert_eq!(
        first["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"],
        "3"
    );
    assert_eq!(
        first["metadata"]["annotations"]["deployment.kubernetes.io/max-replicas"],
        "4"
    );
    assert_eq!(
        first["metadata"]["ownerReferences"][0]["kind"],
        "Deployment"
    );
    assert_eq!(first["metadata"]["ownerReferences"][0]["controller"], true);
    let pods = pods_of(&init, "web");
    assert_eq!(pods.len(), 3);
    for p in &pods {
        let pname = p["metadata"]["name"].as_str().unwrap_or("");
        let suffix = pname.strip_prefix(&format!("{first_name}-")).unwrap_or("");
        assert_eq!(suffix.len(), 5, "{pname}");
        let owner = &p["metadata"]["ownerReferences"][0];
        assert_eq!(owner["name"], first_name.as_str());
        assert_eq!(owner["controller"], true);
        assert_eq!(owner["blockOwnerDeletion"], true);
    }
    let d = get_json(&init, &["get", "deployment", "web"]);
    assert_eq!(d["status"]["replicas"], 3, "{d}");
    assert_eq!(d["status"]["updatedReplicas"], 3);
    assert_eq!(d["status"]["availableReplicas"], 3);
    assert_eq!(
        d["status"]["observedGeneration"],
        d["metadata"]["generation"]
    );
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "1"
    );
    let conds = d["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let cond = |t: &str| {
        conds
            .iter()
            .find(|c| c["type"] == t)
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(
        cond("Available")["reason"],
        "MinimumReplicasAvailable",
        "{d}"
    );
    assert_eq!(
        cond("Progressing")["reason"],
        "NewReplicaSetAvailable",
        "{d}"
    );
    wait("the ScalingReplicaSet event", &init, || {
        init.ok(&[
            "get",
            "events",
            "--field-selector",
            "reason=ScalingReplicaSet",
        ])
        .contains(&format!("Scaled up replica set {first_name} from 0 to 3"))
    });
    wait("the SuccessfulCreate events", &init, || {
        init.ok(&[
            "get",
            "events",
            "--field-selector",
            "reason=SuccessfulCreate",
        ])
        .contains("Created pod: web-")
    });

    // A new template rolls out to a second ReplicaSet; the first is scaled to zero.
    apply(&init, &deployment("web", 3, "nginx:2", ""));
    let out = rollout_status(&init, "web");
    assert!(out.contains("successfully rolled out"), "{out}");
    wait("the old pods to go", &init, || {
        pods_of(&init, "web").len() == 3
    });
    let rss = replicasets_of(&init, "web");
    assert_eq!(rss.len(), 2);
    let second = rss.iter().find(|r| revision(r) == "2").expect("revision 2");
    assert_eq!(second["spec"]["replicas"], 3);
    let old = rss.iter().find(|r| revision(r) == "1").expect("revision 1");
    assert_eq!(old["spec"]["replicas"], 0);
    let history = init.ok(&["rollout", "history", "deployment/web"]);
    assert!(history.contains("1         image nginx:1"), "{history}");
    assert!(history.contains("2         image nginx:2"), "{history}");

    // kubectl's client-side undo: the template of revision 1 comes back as revision 3.
    let out = init.ok(&["rollout", "undo", "deployment/web"]);
    assert!(out.contains("rolled back"), "{out}");
    let out = rollout_status(&init, "web");
    assert!(out.contains("successfully rolled out"), "{out}");
    wait("the first ReplicaSet to be revision 3", &init, || {
        let rss = replicasets_of(&init, "web");
        rss.iter().any(|r| {
            r["metadata"]["name"] == first_name.as_str()
                && revision(r) == "3"
                && r["spec"]["replicas"] == 3
        })
    });
    let rss = replicasets_of(&init, "web");
    let undone = rss
        .iter()
        .find(|r| r["metadata"]["name"] == first_name.as_str())
        .expect("first");
    assert_eq!(
        undone["metadata"]["annotations"]["deployment.kubernetes.io/revision-history"],
        "1"
    );
    let images: Vec<String> = pods_of(&init, "web")
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| {
            p["spec"]["containers"][0]["image"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    wait("nginx:1 pods only", &init, || {
        pods_of(&init, "web")
            .iter()
            .all(|p| p["spec"]["containers"][0]["image"] == "nginx:1")
    });
    assert!(!images.is_empty());
    let history = init.ok(&["rollout", "history", "deployment/web"]);
    assert!(
        history.contains("2         image nginx:2") && history.contains("3         image nginx:1"),
        "{history}"
    );

    // Scale through the scale subresource.
    init.ok(&["scale", "deployment/web", "--replicas=5"]);
    let out = rollout_status(&init, "web");
    assert!(out.contains("successfully rolled out"), "{out}");
    wait("five available replicas", &init, || {
        let d = get_json(&init, &["get", "deployment", "web"]);
        d["status"]["availableReplicas"] == 5 && pods_of(&init, "web").len() == 5
    });
    let rs = get_json(&init, &["get", "rs", &first_name]);
    assert_eq!(
        rs["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"],
        "5"
    );

    // Paused: a template change makes no new ReplicaSet until resumed.
    init.ok(&["rollout", "pause", "deployment/web"]);
    wait("the DeploymentPaused condition", &init, || {
        let d = get_json(&init, &["get", "deployment", "web"]);
        d["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Progressing" && c["reason"] == "DeploymentPaused")
        })
    });
    init.ok(&["set", "image", "deployment/web", "app=nginx:3"]);
    wait(
        "the paused deployment's generation to be observed",
        &init,
        || {
            let d = get_json(&init, &["get", "deployment", "web"]);
            d["status"]["observedGeneration"] == d["metadata"]["generation"]
        },
    );
    assert_eq!(replicasets_of(&init, "web").len(), 2);
    let err = init.fails(&["rollout", "undo", "deployment/web"]);
    assert!(err.contains("paused"), "{err}");
    init.ok(&["rollout", "resume", "deployment/web"]);
    let out = rollout_status(&init, "web");
    assert!(out.contains("successfully rolled out"), "{out}");
    assert_eq!(replicasets_of(&init, "web").len(), 3);
    wait("nginx:3 pods only", &init, || {
        let pods = pods_of(&init, "web");
        pods.len() == 5
            && pods
                .iter()
                .all(|p| p["spec"]["containers"][0]["image"] == "nginx:3")
    });

    // Background deletion: ReplicaSets and pods follow the Deployment.
    init.ok(&["delete", "deployment", "web"]);
    wait("the ReplicaSets and pods to be collected", &init, || {
        replicasets_of(&init, "web").is_empty() && pods_of(&init, "web").is_empty()
    });
}

#[test]
fn rolling_update_respects_max_unavailable_and_history_limit() {
    let name = "rolling_update_limits";
    if !require_tool(name, "kubectl") {
        return;
    }
    let init = Init::start(name);
    let _kubelet = HollowKubelet::start(&init);
    let strategy = "  revisionHistoryLimit: 1\n  strategy:\n    type: RollingUpdate\n    rollingUpdate: {maxSurge: 0, maxUnavailable: 1}\n";
    apply(&init, &deployment("lim", 4, "nginx:1", strategy));
    rollout_status(&init, "lim");
    for image in ["nginx:2", "nginx:3"] {
        apply(&init, &deployment("lim", 4, image, strategy));
        // With maxSurge 0 the ReplicaSets together never ask for more than 4 pods.
        let mut seen_max = 0;
        wait("the rollout", &init, || {
            let asked: i64 = replicasets_of(&init, "lim")
                .iter()
                .filter_map(|r| r["spec"]["replicas"].as_i64())
                .sum();
            seen_max = seen_max.max(asked);
            let d = get_json(&init, &["get", "deployment", "lim"]);
            d["status"]["updatedReplicas"] == 4
                && d["status"]["availableReplicas"] == 4
                && d["status"]["replicas"] == 4
        });
        assert!(
            seen_max <= 4,
            "{seen_max} replicas asked for with maxSurge 0"
        );
    }
    // Only one old ReplicaSet is kept.
    wait("the history limit", &init, || {
        replicasets_of(&init, "lim").len() == 2
    });
    let revisions: Vec<String> = replicasets_of(&init, "lim")
        .iter()
        .map(|r| revision(r).to_string())
        .collect();
    assert!(
        revisions.contains(&"3".to_string()) && revisions.contains(&"2".to_string()),
        "{revisions:?}"
    );
}

#[test]
fn recreate_scales_old_pods_away_before_new_ones_and_deadline_is_reported() {
    let name = "recreate_and_deadline";
    if !require_tool(name, "kubectl") {
        return;
    }
    let init = Init::start(name);
    let _kubelet = HollowKubelet::start(&init);
    let strategy = "  strategy:\n    type: Recreate\n";
    apply(&init, &deployment("rec", 2, "nginx:1", strategy));
    rollout_status(&init, "rec");
    apply(&init, &deployment("rec", 2, "nginx:2", strategy));
    rollout_status(&init, "rec");
    let pods = pods_of(&init, "rec");
    assert_eq!(pods.len(), 2);
    assert!(pods
        .iter()
        .all(|p| p["spec"]["containers"][0]["image"] == "nginx:2"));
    let events = init.ok(&[
        "get",
        "events",
        "--field-selector",
        "reason=ScalingReplicaSet",
    ]);
    assert!(
        events.contains("Scaled down replica set rec-") && events.contains("from 2 to 0"),
        "{events}"
    );

    // Pods that never become ready: the rollout exceeds its deadline.
    let stuck = deployment("stuck", 1, "nginx:1", "  progressDeadlineSeconds: 3\n")
        .replace(&format!("nodeName: {HOLLOW_NODE}"), "nodeName: dead-node");
    apply(&init, &stuck);
    let out = init.kubectl(&["rollout", "status", "deployment/stuck", "--timeout=60s"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("deployment \"stuck\" exceeded its progress deadline"),
        "{err}"
    );
    let d = get_json(&init, &["get", "deployment", "stuck"]);
    assert!(
        d["status"]["conditions"].as_array().is_some_and(|cs| cs
            .iter()
            .any(|c| c["type"] == "Progressing"
                && c["status"] == "False"
                && c["reason"] == "ProgressDeadlineExceeded")),
        "{d}"
    );
    assert!(
        d["status"]["conditions"].as_array().is_some_and(|cs| cs
            .iter()
            .any(|c| c["type"] == "Available" && c["reason"] == "MinimumReplicasUnavailable")),
        "{d}"
    );
    assert_eq!(d["status"]["unavailableReplicas"], 1);
}

fn replicaset(name: &str, replicas: u32) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: {name}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      nodeName: {HOLLOW_NODE}
      terminationGracePeriodSeconds: 0
      containers:
      - name: app
        image: nginx
"#
    )
}

fn controller_uid(obj: &Value) -> Option<String> {
    obj["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|r| r["controller"] == true)
        .and_then(|r| r["uid"].as_str().map(str::to_string))
}

#[test]
fn replicaset_adopts_releases_replaces_and_orphans() {
    let name = "replicaset_adopts";
    if !require_tool(name, "kubectl") {
        return;
    }
    let init = Init::start(name);
    let _kubelet = HollowKubelet::start(&init);
    // An orphan that matches is adopted instead of a pod being created for it.
    init.ok(&[
        "run",
        "orphan",
        "--image=nginx",
        "--labels=app=rs1",
        "--overrides",
        &format!(r#"{{"spec":{{"nodeName":"{HOLLOW_NODE}","terminationGracePeriodSeconds":0}}}}"#),
    ]);
    apply(&init, &replicaset("rs1", 2));
    let rs_uid = get_json(&init, &["get", "rs", "rs1"])["metadata"]["uid"]
        .as_str()
        .unwrap_or("")
        .to_string();
    wait("two ready replicas", &init, || {
        let rs = get_json(&init, &["get", "rs", "rs1"]);
        rs["status"]["readyReplicas"] == 2
            && rs["status"]["availableReplicas"] == 2
            && rs["status"]["fullyLabeledReplicas"] == 2
            && rs["status"]["observedGeneration"] == 1
    });
    let pods = pods_of(&init, "rs1");
    assert_eq!(pods.len(), 2, "{:?}", names(&pods));
    assert!(names(&pods).contains(&"orphan".to_string()));
    assert!(pods
        .iter()
        .all(|p| controller_uid(p).as_deref() == Some(rs_uid.as_str())));

    // A deleted pod is replaced.
    init.ok(&["delete", "pod", "orphan"]);
    wait("a replacement", &init, || {
        let pods = pods_of(&init, "rs1");
        pods.len() == 2 && !names(&pods).contains(&"orphan".to_string())
    });
    let events = init.ok(&[
        "get",
        "events",
        "--field-selector",
        "reason=SuccessfulCreate",
    ]);
    assert!(events.contains("Created pod: rs1-"), "{events}");

    // A pod relabelled out of the selector is released, and replaced.
    let victim = names(&pods_of(&init, "rs1"))[0].clone();
    init.ok(&["label", "pod", &victim, "app=elsewhere", "--overwrite"]);
    wait("the release and a replacement", &init, || {
        let p = get_json(&init, &["get", "pod", &victim]);
        controller_uid(&p).is_none() && pods_of(&init, "rs1").len() == 2
    });

    // Scaling down deletes; SuccessfulDelete is recorded.
    init.ok(&["scale", "rs", "rs1", "--replicas=1"]);
    wait("one pod", &init, || pods_of(&init, "rs1").len() == 1);
    wait("the SuccessfulDelete event", &init, || {
        init.ok(&[
            "get",
            "events",
            "--field-selector",
            "reason=SuccessfulDelete",
        ])
        .contains("Deleted pod: rs1-")
    });

    // Orphan propagation: the ReplicaSet goes, its pod stays without an owner.
    init.ok(&["scale", "rs", "rs1", "--replicas=2"]);
    wait("two pods", &init, || pods_of(&init, "rs1").len() == 2);
    init.ok(&["delete", "rs", "rs1", "--cascade=orphan"]);
    wait("the orphaned pods", &init, || {
        let pods = pods_of(&init, "rs1");
        pods.len() == 2
            && pods.iter().all(|p| {
                p["metadata"]["ownerReferences"]
                    .as_array()
                    .is_none_or(|r| r.is_empty())
            })
    });
    assert!(init.kubectl(&["get", "rs", "rs1"]).status.code() != Some(0));
}

#[test]
fn garbage_collector_deletes_in_foreground_and_background() {
    let name = "gc_foreground";
    if !require_tool(name, "kubectl") {
        return;
    }
    let init = Init::start(name);
    // Foreground: kubectl waits until the owner is gone, which happens only after its
    // blocking dependents.
    apply(&init, &replicaset("fg", 2));
    let _kubelet = HollowKubelet::start(&init);
    wait("two pods", &init, || pods_of(&init, "fg").len() == 2);
    init.ok(&[
        "delete",
        "rs",
        "fg",
        "--cascade=foreground",
        "--timeout=60s",
    ]);
    assert!(
        pods_of(&init, "fg").is_empty(),
        "dependents must go before a foreground owner"
    );

    // Background over ConfigMaps: a dependent of a gone owner is deleted; one with a
    // remaining owner only loses the reference.
    init.ok(&["create", "configmap", "owner-a"]);
    init.ok(&["create", "configmap", "owner-b"]);
    let uid = |n: &str| {
        get_json(&init, &["get", "configmap", n])["metadata"]["uid"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    let (a, b) = (uid("owner-a"), uid("owner-b"));
    let dep = |name: &str, owners: &[(&str, &str)]| {
        let refs: Vec<String> = owners
            .iter()
            .map(|(n, u)| {
                format!(r#"{{"apiVersion":"v1","kind":"ConfigMap","name":"{n}","uid":"{u}"}}"#)
            })
            .collect();
        format!(
            r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name}","ownerReferences":[{}]}}}}"#,
            refs.join(",")
        )
    };
    apply(&init, &dep("only-a", &[("owner-a", &a)]));
    apply(&init, &dep("a-and-b", &[("owner-a", &a), ("owner-b", &b)]));
    apply(
        &init,
        &dep(
            "dangling",
            &[("never-was", "00000000-0000-0000-0000-000000000000")],
        ),
    );
    init.ok(&["delete", "configmap", "owner-a"]);
    wait("the collection", &init, || {
        let cms = names(&items(&init, &["get", "configmaps"]));
        !cms.contains(&"only-a".to_string())
            && !cms.contains(&"dangling".to_string())
            && cms.contains(&"a-and-b".to_string())
            && get_json(&init, &["get", "configmap", "a-and-b"])["metadata"]["ownerReferences"]
                .as_array()
                .is_some_and(|r| r.len() == 1 && r[0]["uid"] == b.as_str())
    });
}

/// A bare pod with `labels`, bound to the hollow node.
fn bare_pod(name: &str, app: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {{app: {app}}}
spec:
  nodeName: {HOLLOW_NODE}
  terminationGracePeriodSeconds: 0
  containers:
  - name: app
    image: busybox
"#
    )
}

/// The status counts of a PodDisruptionBudget: healthy, desired, expected, allowed.
fn pdb_counts(init: &Init, name: &str) -> (i64, i64, i64, i64) {
    let st = get_json(init, &["get", "pdb", name])["status"].clone();
    let n = |k: &str| st[k].as_i64().unwrap_or(-1);
    (
        n("currentHealthy"),
        n("desiredHealthy"),
        n("expectedPods"),
        n("disruptionsAllowed"),
    )
}

/// POSTs an eviction of `pod`: the status code and the answer.
fn evict(init: &Init, pod: &str) -> (u16, Value) {
    let body = format!(
        r#"{{"apiVersion":"policy/v1","kind":"Eviction","metadata":{{"name":"{pod}","namespace":"default"}}}}"#
    );
    let (code, text) = init.request(
        "POST",
        &format!("/api/v1/namespaces/default/pods/{pod}/eviction"),
        "application/json",
        body.as_bytes(),
    );
    (code, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[test]
fn disruption_budgets_guard_evictions_and_drain() {
    let name = "disruption_budgets";
    if !require_tool(name, "kubectl") {
        return;
    }
    let init = Init::start(name);
    let _kubelet = HollowKubelet::start(&init);
    // Bad budgets are refused with upstream's field errors.
    let bad = init
        .kubectl_in(
            &["apply", "-f", "-"],
            Some(
                br#"{"apiVersion":"policy/v1","kind":"PodDisruptionBudget","metadata":{"name":"bad"},
                     "spec":{"minAvailable":1,"maxUnavailable":"150%","selector":{"matchLabels":{"app":"x"}}}}"#,
            ),
        );
    let err = stderr_str(&bad);
    assert!(!bad.status.success(), "{err}");
    assert!(
        err.contains("minAvailable and maxUnavailable cannot be both set")
            && err.contains("spec.maxUnavailable: Invalid value: intstr.IntOrString{Type:1, IntVal:0, StrVal:\"150%\"}: must not be greater than 100%"),
        "{err}"
    );

    // Two bare pods under a budget of one: one may go, the other must stay.
    apply(&init, &bare_pod("guarded-1", "guarded"));
    apply(&init, &bare_pod("guarded-2", "guarded"));
    init.ok(&[
        "create",
        "pdb",
        "guarded",
        "--selector=app=guarded",
        "--min-available=1",
    ]);
    wait("the budget to count two healthy pods", &init, || {
        pdb_counts(&init, "guarded") == (2, 1, 2, 1)
    });
    let table = init.ok(&["get", "pdb", "guarded"]);
    let row: Vec<&str> = table
        .lines()
        .nth(1)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(row[..4], ["guarded", "1", "N/A", "1"], "{table}");
    assert!(table.starts_with("NAME"), "{table}");
    assert!(
        table.contains("MIN AVAILABLE   MAX UNAVAILABLE   ALLOWED DISRUPTIONS"),
        "{table}"
    );
    let pdb = get_json(&init, &["get", "pdb", "guarded"]);
    let cond = &pdb["status"]["conditions"][0];
    assert_eq!(
        (&cond["type"], &cond["status"], &cond["reason"]),
        (
            &"DisruptionAllowed".into(),
            &"True".into(),
            &"SufficientPods".into()
        ),
        "{pdb}"
    );

    let (code, answer) = evict(&init, "guarded-1");
    assert_eq!(code, 201, "{answer}");
    wait("the evicted pod to go", &init, || {
        !names(&pods_of(&init, "guarded")).contains(&"guarded-1".to_string())
    });
    let (code, answer) = evict(&init, "guarded-2");
    assert_eq!(code, 429, "{answer}");
    assert_eq!(
        answer["message"], "Cannot evict pod as it would violate the pod's disruption budget.",
        "{answer}"
    );
    assert_eq!(answer["details"]["causes"][0]["reason"], "DisruptionBudget");
    assert!(
        answer["details"]["causes"][0]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("The disruption budget guarded needs 1 healthy pods")),
        "{answer}"
    );
    assert_eq!(names(&pods_of(&init, "guarded")), ["guarded-2"]);

    // kubectl drain retries a refused eviction until its timeout.
    apply(
        &init,
        &format!("apiVersion: v1\nkind: Node\nmetadata:\n  name: {HOLLOW_NODE}\n"),
    );
    let drain = init.kubectl(&["drain", HOLLOW_NODE, "--force", "--timeout=8s"]);
    let err = stderr_str(&drain);
    assert!(!drain.status.success(), "{}", describe(&drain));
    assert!(
        err.contains("Cannot evict pod as it would violate the pod's disruption budget."),
        "{err}"
    );
    assert_eq!(names(&pods_of(&init, "guarded")), ["guarded-2"]);

    // A budget that allows the disruption lets drain finish.
    init.ok(&[
        "patch",
        "pdb",
        "guarded",
        "--type=merge",
        "-p",
        r#"{"spec":{"minAvailable":0}}"#,
    ]);
    wait("the budget to allow one disruption again", &init, || {
        pdb_counts(&init, "guarded") == (1, 0, 1, 1)
    });
    init.ok(&["drain", HOLLOW_NODE, "--force", "--timeout=60s"]);
    assert!(pods_of(&init, "guarded").is_empty());
    init.ok(&["uncordon", HOLLOW_NODE]);

    // A percentage counts the replicas the pods' controller wants.
    apply(&init, &deployment("spread", 4, "nginx:1", ""));
    apply(
        &init,
        r#"{"apiVersion":"policy/v1","kind":"PodDisruptionBudget","metadata":{"name":"spread"},
            "spec":{"maxUnavailable":"25%","selector":{"matchLabels":{"app":"spread"}}}}"#,
    );
    wait("the Deployment's budget", &init, || {
        pdb_counts(&init, "spread") == (4, 3, 4, 1)
    });
}
