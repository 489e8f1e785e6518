//! `metrics.k8s.io/v1beta1`: NodeMetrics and PodMetrics, which `kubectl top` reads. Built on
//! each request from the `Stats` of the node agents concerned, called concurrently with a
//! deadline; a node whose agent does not answer is left out, as metrics-server leaves out a
//! kubelet it cannot scrape. Only Nodes and Pods in the store are reported, each matched to its
//! agent's numbers by namespace, name and uid.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::StreamExt;
use serde_json::{json, Map, Value};
use skiff_proto::agent::agent_client::AgentClient;
use skiff_proto::agent::{StatsRequest, StatsResponse, Usage};
use time::OffsetDateTime;
use tracing::warn;

use super::catalog::{self, ResourceType};
use super::registry::{self, ListOptions};
use super::rest::{self, Query, Target};
use super::selectors::{FieldSelector, LabelSelector};
use super::status::Status;
use super::{agent, defaults};
use crate::store::Store;

/// How long one agent may take to answer, connection included.
const AGENT_DEADLINE: Duration = Duration::from_secs(5);
/// Agents called at once.
const CONCURRENT_AGENTS: usize = 32;
const GROUP: &str = "metrics.k8s.io";
const API_VERSION: &str = "metrics.k8s.io/v1beta1";

/// Serves `get` and `list` of `nodes` and `pods` in `metrics.k8s.io`.
pub async fn serve(
    store: &Store,
    target: &Target,
    verb: &str,
    q: &Query,
    headers: &HeaderMap,
) -> Result<Response, Status> {
    let pods = target.res.namespaced;
    let items = match (verb, pods) {
        ("get", false) => vec![node_metrics_one(store, target).await?],
        ("get", true) => vec![pod_metrics_one(store, target).await?],
        ("list", false) => node_metrics_list(store, target, q).await?,
        ("list", true) => pod_metrics_list(store, target, q).await?,
        _ => return Err(Status::method_not_allowed(verb, &target.res.qualified())),
    };
    if rest::wants_table(headers) {
        return Ok(Json(table(&items, q)).into_response());
    }
    if verb == "get" {
        return Ok(Json(items.into_iter().next().unwrap_or_default()).into_response());
    }
    let kind = if pods {
        "PodMetricsList"
    } else {
        "NodeMetricsList"
    };
    Ok(Json(json!({
        "kind": kind,
        "apiVersion": API_VERSION,
        "metadata": {},
        "items": items,
    }))
    .into_response())
}

fn core(plural: &str) -> Result<&'static ResourceType, Status> {
    catalog::find("", "v1", plural).ok_or_else(|| Status::internal(format!("no {plural}")))
}

async fn node_metrics_one(store: &Store, target: &Target) -> Result<Value, Status> {
    let name = target.name.as_deref().unwrap_or("");
    let node = registry::get(store, &registry::key(core("nodes")?, None, name))
        .await?
        // What metrics-server's node lister answers.
        .ok_or_else(|| Status::object_not_found("", "node", "node", name))?;
    let stats = scrape(std::slice::from_ref(&node)).await;
    node_metrics(&node, &stats)
        .ok_or_else(|| Status::object_not_found(GROUP, "nodemetrics", &qualified("node"), name))
}

async fn node_metrics_list(
    store: &Store,
    target: &Target,
    q: &Query,
) -> Result<Vec<Value>, Status> {
    let (label, field) = rest::selectors(target.res, q)?;
    let nodes = list(store, core("nodes")?, None, &label, &field).await?;
    let stats = scrape(&nodes).await;
    Ok(nodes
        .iter()
        .filter_map(|n| node_metrics(n, &stats))
        .collect())
}

async fn pod_metrics_one(store: &Store, target: &Target) -> Result<Value, Status> {
    let namespace = target.namespace.as_deref().unwrap_or("");
    let name = target.name.as_deref().unwrap_or("");
    let pod = registry::get(store, &registry::key(core("pods")?, Some(namespace), name))
        .await?
        .ok_or_else(|| Status::object_not_found("", "pods", "pods", name))?;
    let pods = [pod];
    let stats = scrape(&nodes_of(store, &pods).await?).await;
    pod_metrics(&pods[0], &stats).ok_or_else(|| {
        Status::object_not_found(
            GROUP,
            "podmetrics",
            &qualified("pod"),
            &format!("{namespace}/{name}"),
        )
    })
}

async fn pod_metrics_list(store: &Store, target: &Target, q: &Query) -> Result<Vec<Value>, Status> {
    let (label, field) = rest::selectors(target.res, q)?;
    let pods = list(
        store,
        core("pods")?,
        target.namespace.as_deref(),
        &label,
        &field,
    )
    .await?;
    let stats = scrape(&nodes_of(store, &pods).await?).await;
    let mut items: Vec<Value> = pods.iter().filter_map(|p| pod_metrics(p, &stats)).collect();
    // metrics-server's order: namespace, then name.
    items.sort_by(|a, b| {
        let key = |v: &Value| {
            (
                v["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
                v["metadata"]["name"].as_str().unwrap_or("").to_string(),
            )
        };
        key(a).cmp(&key(b))
    });
    Ok(items)
}

/// `podmetrics.metrics.k8s.io`, as upstream names the resources in errors.
fn qualified(kind: &str) -> String {
    format!("{kind}metrics.{GROUP}")
}

async fn list(
    store: &Store,
    res: &ResourceType,
    namespace: Option<&str>,
    label: &LabelSelector,
    field: &FieldSelector,
) -> Result<Vec<Value>, Status> {
    let page = registry::list(
        store,
        &registry::prefix(res, namespace),
        &ListOptions::default(),
        |o| label.matches(&o["metadata"]["labels"]) && field.matches(o),
    )
    .await?;
    Ok(page.items)
}

/// The Node objects the pods are bound to, in one read.
async fn nodes_of(store: &Store, pods: &[Value]) -> Result<Vec<Value>, Status> {
    let names: BTreeSet<&str> = pods
        .iter()
        .filter_map(|p| p["spec"]["nodeName"].as_str())
        .filter(|n| !n.is_empty())
        .collect();
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let page = registry::list(
        store,
        &registry::prefix(core("nodes")?, None),
        &ListOptions::default(),
        |n| {
            n["metadata"]["name"]
                .as_str()
                .is_some_and(|name| names.contains(name))
        },
    )
    .await?;
    Ok(page.items)
}

/// Each node's Stats, by node name; nodes whose agent cannot be reached in time are missing.
async fn scrape(nodes: &[Value]) -> HashMap<String, StatsResponse> {
    let targets: Vec<(String, Option<String>)> = nodes
        .iter()
        .map(|node| {
            let name = node["metadata"]["name"].as_str().unwrap_or("").to_string();
            (name, agent::endpoint(node))
        })
        .collect();
    let answers: Vec<Option<(String, StatsResponse)>> = futures::stream::iter(targets)
        .map(|(name, endpoint)| scrape_one(name, endpoint))
        .buffer_unordered(CONCURRENT_AGENTS)
        .collect()
        .await;
    answers.into_iter().flatten().collect()
}

async fn scrape_one(name: String, endpoint: Option<String>) -> Option<(String, StatsResponse)> {
    let Some(endpoint) = endpoint else {
        warn!(node = %name, "no agent endpoint in the node's status; no metrics");
        return None;
    };
    match tokio::time::timeout(AGENT_DEADLINE, stats_of(endpoint)).await {
        Ok(Ok(stats)) => Some((name, stats)),
        Ok(Err(why)) => {
            warn!(node = %name, error = %why, "node agent gave no stats");
            None
        }
        Err(_) => {
            warn!(node = %name, "node agent gave no stats within {AGENT_DEADLINE:?}");
            None
        }
    }
}

async fn stats_of(endpoint: String) -> Result<StatsResponse, String> {
    let channel = tonic::transport::Endpoint::from_shared(endpoint)
        .map_err(|e| e.to_string())?
        .connect_timeout(AGENT_DEADLINE)
        .connect()
        .await
        .map_err(|e| e.to_string())?;
    AgentClient::new(channel)
        .stats(StatsRequest {})
        .await
        .map(tonic::Response::into_inner)
        .map_err(|s| s.message().to_string())
}

/// A NodeMetrics, when the node's agent reported the node's usage.
fn node_metrics(node: &Value, stats: &HashMap<String, StatsResponse>) -> Option<Value> {
    let name = node["metadata"]["name"].as_str()?;
    let s = stats.get(name)?;
    let usage = s.node.as_ref()?;
    Some(json!({
        "kind": "NodeMetrics",
        "apiVersion": API_VERSION,
        "metadata": metadata(node, false),
        "timestamp": timestamp(s.timestamp_unix_ms),
        "window": go_duration(s.window_ms),
        "usage": usage_json(usage),
    }))
}

/// A PodMetrics, when the pod's node reported its containers.
fn pod_metrics(pod: &Value, stats: &HashMap<String, StatsResponse>) -> Option<Value> {
    let meta = &pod["metadata"];
    let (namespace, name) = (meta["namespace"].as_str()?, meta["name"].as_str()?);
    let uid = meta["uid"].as_str().unwrap_or("");
    let node = pod["spec"]["nodeName"].as_str()?;
    let s = stats.get(node)?;
    let p = s.pods.iter().find(|p| {
        p.namespace == namespace
            && p.name == name
            && (p.uid.is_empty() || uid.is_empty() || p.uid == uid)
    })?;
    if p.containers.is_empty() {
        return None;
    }
    let (stamp, window) = if p.window_ms > 0 {
        (p.timestamp_unix_ms, p.window_ms)
    } else {
        (s.timestamp_unix_ms, s.window_ms)
    };
    let containers: Vec<Value> = p
        .containers
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "usage": usage_json(&c.usage.unwrap_or_default()),
            })
        })
        .collect();
    Some(json!({
        "kind": "PodMetrics",
        "apiVersion": API_VERSION,
        "metadata": metadata(pod, true),
        "timestamp": timestamp(stamp),
        "window": go_duration(window),
        "containers": containers,
    }))
}

/// The object's name (and namespace) and labels, created now, as metrics-server fills them.
fn metadata(obj: &Value, namespaced: bool) -> Value {
    let meta = &obj["metadata"];
    let mut out = Map::new();
    out.insert("name".into(), meta["name"].clone());
    if namespaced {
        out.insert("namespace".into(), meta["namespace"].clone());
    }
    out.insert(
        "creationTimestamp".into(),
        defaults::format_time(OffsetDateTime::now_utc(), false).into(),
    );
    if meta["labels"].as_object().is_some_and(|l| !l.is_empty()) {
        out.insert("labels".into(), meta["labels"].clone());
    }
    Value::Object(out)
}

fn usage_json(u: &Usage) -> Value {
    json!({
        "cpu": cpu_quantity(u.cpu_nanocores),
        "memory": memory_quantity(u.memory_working_set_bytes),
    })
}

fn timestamp(unix_ms: i64) -> String {
    let t = OffsetDateTime::from_unix_timestamp(unix_ms.div_euclid(1000))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    defaults::format_time(t, false)
}

/// A Table of metrics as metrics-server converts them: name, cpu, memory and window.
fn table(items: &[Value], q: &Query) -> Value {
    let include = q
        .get("includeObject")
        .map(String::as_str)
        .unwrap_or("Metadata");
    let column = |name: &str, format: &str| json!({"name": name, "type": "string", "format": format, "description": "", "priority": 0});
    let mut name_col = column("Name", "name");
    name_col["description"] = "Name of the resource".into();
    let rows: Vec<Value> = items
        .iter()
        .map(|item| {
            // A pod's usage is its containers' summed; a node's is its own.
            let (cpu, memory) = match item["containers"].as_array() {
                Some(cs) => cs.iter().fold((0u64, 0u64), |(c, m), ctr| {
                    let u = &ctr["usage"];
                    (
                        c.saturating_add(parse_cpu(&u["cpu"]).unwrap_or(0)),
                        m.saturating_add(parse_memory(&u["memory"]).unwrap_or(0)),
                    )
                }),
                None => (
                    parse_cpu(&item["usage"]["cpu"]).unwrap_or(0),
                    parse_memory(&item["usage"]["memory"]).unwrap_or(0),
                ),
            };
            let mut row = json!({"cells": [
                item["metadata"]["name"],
                cpu_quantity(cpu),
                memory_quantity(memory),
                item["window"],
            ]});
            match include {
                "None" => {}
                "Object" => row["object"] = item.clone(),
                _ => {
                    row["object"] = json!({
                        "kind": "PartialObjectMetadata",
                        "apiVersion": "meta.k8s.io/v1",
                        "metadata": item["metadata"],
                    })
                }
            }
            row
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {},
        "columnDefinitions": [
            name_col,
            column("cpu", "quantity"),
            column("memory", "quantity"),
            column("Window", "duration"),
        ],
        "rows": rows,
    })
}

/// Nanocores as upstream's Quantity prints a DecimalSI amount at scale -9: the largest
/// power-of-1000 unit that keeps it whole ("250m", "1500u", "123456n", "2").
pub fn cpu_quantity(nanocores: u64) -> String {
    decimal(nanocores, -9)
}

/// Bytes as upstream's Quantity prints a BinarySI amount: the largest power-of-1024 unit
/// that keeps it whole ("4Ki", "128Mi", "1536"); below 1024 it prints as a decimal amount.
pub fn memory_quantity(bytes: u64) -> String {
    if bytes < 1024 {
        return decimal(bytes, 0);
    }
    const UNITS: [&str; 7] = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
    let (mut m, mut unit) = (bytes, 0);
    while m % 1024 == 0 && unit + 1 < UNITS.len() {
        m /= 1024;
        unit += 1;
    }
    format!("{m}{}", UNITS[unit])
}

fn decimal(value: u64, exponent: i32) -> String {
    if value == 0 {
        return "0".into();
    }
    let (mut m, mut e) = (value, exponent);
    while m % 1000 == 0 && e < 18 {
        m /= 1000;
        e += 3;
    }
    let suffix = match e {
        -9 => "n",
        -6 => "u",
        -3 => "m",
        0 => "",
        3 => "k",
        6 => "M",
        9 => "G",
        12 => "T",
        15 => "P",
        _ => "E",
    };
    format!("{m}{suffix}")
}

/// Reads back what [`cpu_quantity`] writes, in nanocores.
fn parse_cpu(v: &Value) -> Option<u64> {
    let s = v.as_str()?;
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    let scale: u64 = match suffix {
        "n" => 1,
        "u" => 1_000,
        "m" => 1_000_000,
        "" => 1_000_000_000,
        "k" => 1_000_000_000_000,
        _ => return None,
    };
    num.parse::<u64>().ok()?.checked_mul(scale)
}

/// Reads back what [`memory_quantity`] writes, in bytes.
fn parse_memory(v: &Value) -> Option<u64> {
    let s = v.as_str()?;
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    let shift = match suffix {
        "" => 0,
        "k" => return num.parse::<u64>().ok()?.checked_mul(1000),
        "Ki" => 10,
        "Mi" => 20,
        "Gi" => 30,
        "Ti" => 40,
        "Pi" => 50,
        "Ei" => 60,
        _ => return None,
    };
    num.parse::<u64>().ok()?.checked_mul(1u64 << shift)
}

/// A duration in milliseconds as Go's `time.Duration` prints it, which `metav1.Duration`
/// serialises: "0s", "250ms", "15.2s", "1m0s", "2h3m4.5s".
pub fn go_duration(ms: i64) -> String {
    let ms = u64::try_from(ms).unwrap_or(0);
    if ms == 0 {
        return "0s".into();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let (h, m, s, frac) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    let seconds = if frac == 0 {
        format!("{s}s")
    } else {
        let f = format!("{frac:03}");
        format!("{s}.{}s", f.trim_end_matches('0'))
    };
    match (h, m) {
        (0, 0) => seconds,
        (0, m) => format!("{m}m{seconds}"),
        (h, m) => format!("{h}h{m}m{seconds}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_proto::agent::{ContainerStats, PodStats};

    #[test]
    fn quantities_as_upstream_prints_them() {
        assert_eq!(cpu_quantity(0), "0");
        assert_eq!(cpu_quantity(123_456), "123456n");
        assert_eq!(cpu_quantity(1_500_000), "1500u");
        assert_eq!(cpu_quantity(250_000_000), "250m");
        assert_eq!(cpu_quantity(1_000_000_000), "1");
        assert_eq!(cpu_quantity(2_000_000_000_000), "2k");
        assert_eq!(memory_quantity(0), "0");
        assert_eq!(memory_quantity(512), "512");
        assert_eq!(memory_quantity(1000), "1k");
        assert_eq!(memory_quantity(1536), "1536");
        assert_eq!(memory_quantity(4096), "4Ki");
        assert_eq!(memory_quantity(2364 * 1024), "2364Ki");
        assert_eq!(memory_quantity(128 << 20), "128Mi");
        for n in [0, 7, 123_456, 1_500_000, 250_000_000, 3_000_000_000] {
            assert_eq!(parse_cpu(&json!(cpu_quantity(n))), Some(n));
        }
        for b in [0, 512, 1000, 1536, 4096, 2364 * 1024, 128 << 20, 3 << 30] {
            assert_eq!(parse_memory(&json!(memory_quantity(b))), Some(b));
        }
    }

    #[test]
    fn durations_as_go_prints_them() {
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(250), "250ms");
        assert_eq!(go_duration(1000), "1s");
        assert_eq!(go_duration(15_200), "15.2s");
        assert_eq!(go_duration(20_035), "20.035s");
        assert_eq!(go_duration(60_000), "1m0s");
        assert_eq!(go_duration(60_500), "1m0.5s");
        assert_eq!(go_duration(7_384_500), "2h3m4.5s");
        assert_eq!(go_duration(3_600_000), "1h0m0s");
    }

    fn usage(cpu: u64, mem: u64) -> Option<Usage> {
        Some(Usage {
            cpu_nanocores: cpu,
            memory_working_set_bytes: mem,
        })
    }

    #[test]
    fn objects_from_an_agents_stats() {
        let stats: HashMap<String, StatsResponse> = [(
            "n1".to_string(),
            StatsResponse {
                node: usage(1_250_000_000, 2 << 30),
                timestamp_unix_ms: 1_767_225_600_000,
                window_ms: 15_000,
                pods: vec![PodStats {
                    namespace: "default".into(),
                    name: "web".into(),
                    uid: "u1".into(),
                    containers: vec![ContainerStats {
                        name: "app".into(),
                        usage: usage(250_000_000, 64 << 20),
                    }],
                    timestamp_unix_ms: 1_767_225_601_000,
                    window_ms: 200,
                }],
            },
        )]
        .into();
        let node = json!({"metadata": {"name": "n1", "labels": {"zone": "a"}}});
        let m = node_metrics(&node, &stats).unwrap();
        assert_eq!(m["usage"], json!({"cpu": "1250m", "memory": "2Gi"}));
        assert_eq!(m["timestamp"], "2026-01-01T00:00:00Z");
        assert_eq!(m["window"], "15s");
        assert_eq!(m["metadata"]["labels"]["zone"], "a");
        assert!(node_metrics(&json!({"metadata": {"name": "n2"}}), &stats).is_none());

        let pod = json!({"metadata": {"name": "web", "namespace": "default", "uid": "u1"},
            "spec": {"nodeName": "n1"}});
        let m = pod_metrics(&pod, &stats).unwrap();
        assert_eq!(m["kind"], "PodMetrics");
        assert_eq!(m["metadata"]["namespace"], "default");
        assert!(m["metadata"].get("labels").is_none());
        assert_eq!(m["window"], "200ms");
        assert_eq!(m["timestamp"], "2026-01-01T00:00:01Z");
        assert_eq!(
            m["containers"],
            json!([{"name": "app", "usage": {"cpu": "250m", "memory": "64Mi"}}])
        );
        // A pod of the same name but another uid is another pod.
        let other = json!({"metadata": {"name": "web", "namespace": "default", "uid": "u2"},
            "spec": {"nodeName": "n1"}});
        assert!(pod_metrics(&other, &stats).is_none());

        let t = table(&[m], &Query::new());
        assert_eq!(
            t["rows"][0]["cells"],
            json!(["web", "250m", "64Mi", "200ms"])
        );
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    }
}
