//! End-to-end: pod volumes inside real containers (busybox through the real shim). configMap,
//! secret, emptyDir (disk and sized memory), downwardAPI and a subPath file are mounted as the
//! kubelet will mount them; the container sees the contents, cannot write the read-only ones,
//! fills the memory emptyDir to its limit, and sees a configMap update arrive while it runs
//! (while its subPath copy keeps the old contents, as upstream). Needs root; skips loudly
//! otherwise.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::cluster::wait_until;
use common::runtime::*;
use serde_json::json;
use skiff_node_agent::kubelet::volumes::{self, PodVolumes, StaticObjects};

const T: Duration = Duration::from_secs(30);

/// Tears the pod's volumes down even when the test fails (before the runtime environment, so
/// nothing is deleted through a mount).
struct VolumesGuard(PathBuf);

impl Drop for VolumesGuard {
    fn drop(&mut self) {
        if let Err(e) = volumes::teardown(&self.0) {
            eprintln!("[harness] volume teardown of {}: {e}", self.0.display());
        }
    }
}

fn mounts_below(dir: &Path) -> Vec<String> {
    let Ok(dir) = fs::canonicalize(dir) else {
        return Vec::new();
    };
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(String::from))
        .filter(|p| Path::new(p).starts_with(&dir))
        .collect()
}

const SCRIPT: &str = r#"
cat /etc/cfg/app.conf; echo
cat /etc/app.conf; echo
cat /secrets/password; echo
cat /info/name; echo
echo hi > /data/out && echo wrote-data
if touch /etc/cfg/new 2>/dev/null; then echo cfg-writable; else echo cfg-readonly; fi
if touch /secrets/new 2>/dev/null; then echo secret-writable; else echo secret-readonly; fi
if dd if=/dev/zero of=/mem/big bs=1024 count=2048 2>/dev/null; then echo mem-unbounded; else echo mem-full; fi
echo waiting
while [ "$(cat /etc/cfg/app.conf)" != v2 ]; do sleep 0.05 2>/dev/null || sleep 1; done
echo saw-v2
cat /etc/app.conf; echo
"#;

fn config_map(value: &str) -> serde_json::Value {
    json!({
        "metadata": {"name": "app", "namespace": "default"},
        "data": {"app.conf": value}
    })
}

#[test]
fn volumes_are_seen_by_a_real_container_and_config_map_updates_reach_it() {
    let Some(env) = RuntimeEnv::new("vol-e2e") else {
        return;
    };
    let pod_dir = env.dir.path().join("pod");
    let guard = VolumesGuard(pod_dir.clone());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio");

    let objects = StaticObjects::default();
    objects.insert_config_map(serde_json::from_value(config_map("v1")).expect("configmap"));
    objects.insert_secret(
        serde_json::from_value(json!({
            "metadata": {"name": "creds", "namespace": "default"},
            "data": {"password": "aHVudGVyMg=="}
        }))
        .expect("secret"),
    );
    let pod = serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "default", "uid": "u-1"},
        "spec": {
            "containers": [{"name": "app", "volumeMounts": [
                {"name": "cfg", "mountPath": "/etc/cfg"},
                {"name": "cfg", "mountPath": "/etc/app.conf", "subPath": "app.conf"},
                {"name": "creds", "mountPath": "/secrets"},
                {"name": "scratch", "mountPath": "/data"},
                {"name": "mem", "mountPath": "/mem"},
                {"name": "info", "mountPath": "/info"}
            ]}],
            "volumes": [
                {"name": "cfg", "configMap": {"name": "app"}},
                {"name": "creds", "secret": {"secretName": "creds"}},
                {"name": "scratch", "emptyDir": {}},
                {"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
                {"name": "info", "downwardAPI": {"items": [
                    {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}
                ]}}
            ]
        }
    }))
    .expect("pod");
    let vols = rt
        .block_on(PodVolumes::prepare(&pod, &pod_dir, &objects))
        .expect("prepare");
    let container = &pod.spec.as_ref().expect("spec").containers[0];
    let mut cfg = env.config("app", &["sh", "-c", SCRIPT]);
    cfg.mounts = vols.mounts(container).expect("mounts");
    env.create("app", &cfg);

    let reached = wait_until(T, Duration::from_millis(50), || {
        env.stdout_lines("app").iter().any(|l| l == "waiting")
    });
    assert!(reached, "container output: {:?}", env.log_messages("app"));
    assert_eq!(
        env.stdout_lines("app"),
        [
            "v1",
            "v1",
            "hunter2",
            "web",
            "wrote-data",
            "cfg-readonly",
            "secret-readonly",
            "mem-full",
            "waiting"
        ]
    );
    let scratch = vols.host_path("scratch").expect("scratch");
    assert_eq!(fs::read_to_string(scratch.join("out")).unwrap(), "hi\n");

    // The update reaches the running container through `..data`; its subPath copy stays.
    objects.insert_config_map(serde_json::from_value(config_map("v2")).expect("configmap"));
    rt.block_on(PodVolumes::prepare(&pod, &pod_dir, &objects))
        .expect("prepare again");
    let exit = env.wait("app", T);
    assert_eq!(exit.exit_code, 0, "{exit:?}");
    let lines = env.stdout_lines("app");
    assert_eq!(lines[lines.len() - 2..], ["saw-v2", "v1"], "{lines:?}");

    env.delete("app");
    volumes::teardown(&pod_dir).expect("teardown");
    assert!(
        mounts_below(env.dir.path()).is_empty(),
        "{:?}",
        mounts_below(env.dir.path())
    );
    assert!(!scratch.exists());
    drop(guard);
}
