//! `meta.k8s.io/v1` Table responses, which `kubectl get` asks for and prints as they come, with
//! upstream's columns for each kind.

use serde_json::{json, Value};

/// Age the way kubectl shows it (upstream's `HumanDuration`).
pub fn human_age(secs: i64) -> String {
    let s = secs.max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86400);
    match s {
        _ if s < 120 => format!("{s}s"),
        _ if m < 10 => match s % 60 {
            0 => format!("{m}m"),
            r => format!("{m}m{r}s"),
        },
        _ if h < 3 => format!("{m}m"),
        _ if h < 8 => match m % 60 {
            0 => format!("{h}h"),
            r => format!("{h}h{r}m"),
        },
        _ if h < 48 => format!("{h}h"),
        _ if h < 192 => match h % 24 {
            0 => format!("{d}d"),
            r => format!("{d}d{r}h"),
        },
        _ if d < 365 * 2 => format!("{d}d"),
        _ => format!("{}y", d / 365),
    }
}

fn age_of(obj: &Value) -> String {
    let created = obj["metadata"]["creationTimestamp"].as_str().and_then(|t| {
        time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
    });
    match created {
        Some(t) => human_age((time::OffsetDateTime::now_utc() - t).whole_seconds()),
        None => "<unknown>".into(),
    }
}

fn column(name: &str, format: &str, description: &str) -> Value {
    json!({"name": name, "type": "string", "format": format, "description": description, "priority": 0})
}

fn partial(obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj["metadata"].clone(),
    })
}

/// Namespaces: NAME, STATUS, AGE.
pub fn namespaces(items: &[Value], resource_version: &str) -> Value {
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            json!({
                "cells": [o["metadata"]["name"], o["status"]["phase"], age_of(o)],
                "object": partial(o),
            })
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": [
            column("Name", "name", "Name must be unique within a namespace."),
            column("Status", "", "The status of the namespace"),
            column("Age", "", "CreationTimestamp is a timestamp representing the server time when this object was created."),
        ],
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_kubectl() {
        assert_eq!(human_age(5), "5s");
        assert_eq!(human_age(150), "2m30s");
        assert_eq!(human_age(3600), "60m");
        assert_eq!(human_age(4 * 3600 + 60), "4h1m");
        assert_eq!(human_age(30 * 3600), "30h");
        assert_eq!(human_age(3 * 86400), "3d");
        assert_eq!(human_age(400 * 86400), "400d");
    }
}
