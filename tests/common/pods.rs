//! A one-node cluster for kubelet tests: `skiff init` plus a node agent, a busybox-static
//! image already in the agent's image store, and helpers that wait on pod conditions.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::cluster::wait_until;
use super::control_plane::Init;
use super::images::{busybox_layer, TestImage};

/// How often a condition is checked while waiting for it.
const POLL: Duration = Duration::from_millis(100);

/// The image every pod test runs (imported, never pulled).
pub const IMAGE: &str = "skiff.test/busybox:1";

/// `skiff init` whose node agent runs pods, with the test image imported.
pub struct NodeCluster {
    pub init: Init,
    pub node: String,
}

impl NodeCluster {
    /// Starts `skiff init`, whose node agent runs the pods.
    pub fn start(label: &str) -> NodeCluster {
        let init = Init::start(label);
        let node = init.node.clone();
        let cluster = NodeCluster { init, node };
        cluster.import(&TestImage::new(vec![busybox_layer()]), IMAGE);
        cluster
    }

    /// Imports an image into the agent's store (shared safely with the running agent) as
    /// `name`.
    pub fn import(&self, image: &TestImage, name: &str) {
        let data = self.init.dir.path().join("data");
        let images = data.join("agent").join("images");
        let archive = self.init.dir.path().join("import.tar");
        image.write_oci_archive(&archive, name);
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_skiff"))
            .args(["image", "import", "--root"])
            .arg(&images)
            .arg(&archive)
            .output()
            .expect("skiff image import");
        assert!(
            out.status.success(),
            "import: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `kubectl apply -f -` of a manifest.
    pub fn apply(&self, yaml: &str) {
        let out = self
            .init
            .kubectl_in(&["apply", "-f", "-"], Some(yaml.as_bytes()));
        assert!(
            out.status.success(),
            "apply failed: {}\n{yaml}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The pod as JSON, or None when it does not exist.
    pub fn pod(&self, name: &str) -> Option<Value> {
        let out = self.init.kubectl(&["get", "pod", name, "-o", "json"]);
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    /// Waits until `check` holds for the pod, returning it; panics with the pod and the
    /// agent's view after `timeout`.
    pub fn wait_pod(
        &self,
        name: &str,
        timeout: Duration,
        what: &str,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        let mut last = None;
        let mut found = None;
        wait_until(timeout, POLL, || match self.pod(name) {
            Some(p) if check(&p) => {
                found = Some(p);
                true
            }
            other => {
                last = other.or(last.take());
                false
            }
        });
        if let Some(p) = found {
            return p;
        }
        panic!(
            "pod {name}: {what} did not happen within {timeout:?}; last seen:\n{}\nlog:\n{}",
            serde_json::to_string_pretty(&last).unwrap_or_default(),
            self.log_tail()
        );
    }

    /// Follows the pod with `kubectl get -w` until its first container waits with `reason`,
    /// returning `<reason> <message>`; brief states (ErrImagePull lasts a second before the
    /// back-off) are seen this way where polling can miss them.
    pub fn watch_waiting(&self, name: &str, reason: &str, timeout: Duration) -> String {
        let mut states = self.init.kubectl_stream(&[
            "get",
            "pod",
            name,
            "-w",
            "-o",
            "jsonpath={.status.containerStatuses[0].state.waiting.reason} {.status.containerStatuses[0].state.waiting.message}{\"\\n\"}",
        ]);
        let mut seen = Vec::new();
        loop {
            let Some(line) = states.next_line(timeout) else {
                panic!("pod {name} never waited with {reason}; saw {seen:?}")
            };
            if line.starts_with(&format!("{reason} ")) {
                return line;
            }
            seen.push(line);
        }
    }

    /// Waits until the pod is gone.
    pub fn wait_gone(&self, name: &str, timeout: Duration) {
        if wait_until(timeout, POLL, || self.pod(name).is_none()) {
            return;
        }
        panic!(
            "pod {name} still exists after {timeout:?}\n{}",
            self.log_tail()
        );
    }

    fn log_tail(&self) -> String {
        let log =
            std::fs::read_to_string(self.init.dir.path().join("init.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for NodeCluster {
    fn drop(&mut self) {
        // Pods still there are deleted at once (their agent stops them within 2 s), then the
        // node's cgroups go.
        let _ = self.init.kubectl(&[
            "delete",
            "pods",
            "--all",
            "--grace-period=0",
            "--force",
            "--wait=true",
            "--timeout=30s",
        ]);
        // The agent has cleaned up once no container bundle and no pod sandbox is left.
        let run = Path::new("/run/skiff").join(&self.node);
        let busy = |dir: PathBuf| {
            std::fs::read_dir(dir)
                .map(|mut d| d.next().is_some())
                .unwrap_or(false)
        };
        wait_until(Duration::from_secs(20), POLL, || {
            !busy(run.join("runtime").join("bundles")) && !busy(run.join("pods"))
        });
        if let Ok(layout) = skiff_node_agent::runtime::cgroup::CgroupLayout::detect() {
            let _ = layout.remove(&format!("/skiff/{}", self.node));
        }
    }
}

/// The status of container `name` in a pod.
pub fn container_status<'a>(pod: &'a Value, name: &str) -> &'a Value {
    pod["status"]["containerStatuses"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == name))
        .unwrap_or(&Value::Null)
}

/// The pod condition of type `kind`.
pub fn condition(pod: &Value, kind: &str) -> Value {
    pod["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == kind))
        .cloned()
        .unwrap_or_default()
}

/// A pod manifest on the test node running `sh -c script`.
pub fn pod_yaml(name: &str, node: &str, script: &str, extra_spec: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 5
{extra_spec}  containers:
  - name: main
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", {script:?}]
"#
    )
}
