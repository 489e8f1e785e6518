//! A container's environment as the kubelet builds it: `envFrom` (ConfigMaps and Secrets, with
//! prefixes), then `env` in order, where values may refer to earlier variables as `$(NAME)`,
//! and `valueFrom` reads ConfigMap/Secret keys and downward API fields. The same `$(NAME)`
//! expansion applies to `command` and `args`.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::downward;
use super::volumes::{ObjectSource, VolumeError};

/// Why the environment could not be built; the container waits with
/// `CreateContainerConfigError` and this message, as upstream.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    /// A referenced ConfigMap or Secret (or key) is missing and not optional.
    #[error("{0}")]
    Missing(String),
    /// The API server could not be asked.
    #[error("{0}")]
    Source(#[from] VolumeError),
    /// A downward API reference is wrong.
    #[error("{0}")]
    Downward(#[from] downward::DownwardError),
}

/// Fetches each ConfigMap and Secret once per container start.
struct Cache<'a> {
    source: &'a dyn ObjectSource,
    namespace: &'a str,
    config_maps: HashMap<String, Option<ConfigMap>>,
    secrets: HashMap<String, Option<Secret>>,
}

impl Cache<'_> {
    async fn config_map(&mut self, name: &str) -> Result<Option<&ConfigMap>, EnvError> {
        if !self.config_maps.contains_key(name) {
            let cm = self.source.config_map(self.namespace, name).await?;
            self.config_maps.insert(name.to_string(), cm);
        }
        Ok(self.config_maps.get(name).and_then(Option::as_ref))
    }

    async fn secret(&mut self, name: &str) -> Result<Option<&Secret>, EnvError> {
        if !self.secrets.contains_key(name) {
            let s = self.source.secret(self.namespace, name).await?;
            self.secrets.insert(name.to_string(), s);
        }
        Ok(self.secrets.get(name).and_then(Option::as_ref))
    }
}

fn config_map_entries(cm: &ConfigMap) -> BTreeMap<String, String> {
    let mut out = cm.data.clone().unwrap_or_default();
    for (k, v) in cm.binary_data.iter().flatten() {
        out.insert(k.clone(), String::from_utf8_lossy(&v.0).into_owned());
    }
    out
}

fn secret_entries(s: &Secret) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = s
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), String::from_utf8_lossy(&v.0).into_owned()))
        .collect();
    for (k, v) in s.string_data.iter().flatten() {
        out.insert(k.clone(), v.clone());
    }
    out
}

/// The container's environment, in order (later entries win on duplicate names).
pub async fn container_env(
    pod: &Pod,
    c: &Container,
    source: &dyn ObjectSource,
    allocatable: &BTreeMap<String, Quantity>,
) -> Result<Vec<(String, String)>, EnvError> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut cache = Cache {
        source,
        namespace,
        config_maps: HashMap::new(),
        secrets: HashMap::new(),
    };
    let mut env: Vec<(String, String)> = Vec::new();
    let set = |env: &mut Vec<(String, String)>, k: String, v: String| {
        env.retain(|(name, _)| *name != k);
        env.push((k, v));
    };
    for from in c.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(r) = &from.config_map_ref {
            match cache.config_map(&r.name).await? {
                Some(cm) => {
                    for (k, v) in config_map_entries(cm) {
                        set(&mut env, format!("{prefix}{k}"), v);
                    }
                }
                None if r.optional == Some(true) => {}
                None => {
                    return Err(EnvError::Missing(format!(
                        "configmap \"{}\" not found",
                        r.name
                    )))
                }
            }
        }
        if let Some(r) = &from.secret_ref {
            match cache.secret(&r.name).await? {
                Some(s) => {
                    for (k, v) in secret_entries(s) {
                        set(&mut env, format!("{prefix}{k}"), v);
                    }
                }
                None if r.optional == Some(true) => {}
                None => {
                    return Err(EnvError::Missing(format!(
                        "secret \"{}\" not found",
                        r.name
                    )))
                }
            }
        }
    }
    for var in c.env.iter().flatten() {
        let value = if let Some(from) = &var.value_from {
            if let Some(r) = &from.config_map_key_ref {
                let optional = r.optional == Some(true);
                match cache.config_map(&r.name).await? {
                    Some(cm) => match config_map_entries(cm).remove(&r.key) {
                        Some(v) => v,
                        None if optional => continue,
                        None => {
                            return Err(EnvError::Missing(format!(
                                "couldn't find key {} in ConfigMap {namespace}/{}",
                                r.key, r.name
                            )))
                        }
                    },
                    None if optional => continue,
                    None => {
                        return Err(EnvError::Missing(format!(
                            "configmap \"{}\" not found",
                            r.name
                        )))
                    }
                }
            } else if let Some(r) = &from.secret_key_ref {
                let optional = r.optional == Some(true);
                match cache.secret(&r.name).await? {
                    Some(s) => match secret_entries(s).remove(&r.key) {
                        Some(v) => v,
                        None if optional => continue,
                        None => {
                            return Err(EnvError::Missing(format!(
                                "couldn't find key {} in Secret {namespace}/{}",
                                r.key, r.name
                            )))
                        }
                    },
                    None if optional => continue,
                    None => {
                        return Err(EnvError::Missing(format!(
                            "secret \"{}\" not found",
                            r.name
                        )))
                    }
                }
            } else if let Some(f) = &from.field_ref {
                downward::field_value(pod, &f.field_path)?
            } else if let Some(r) = &from.resource_field_ref {
                let ctr = r.container_name.as_deref().unwrap_or(&c.name);
                downward::resource_value(pod, ctr, &r.resource, r.divisor.as_ref(), allocatable)?
            } else {
                String::new()
            }
        } else {
            expand(var.value.as_deref().unwrap_or(""), &env)
        };
        set(&mut env, var.name.clone(), value);
    }
    Ok(env)
}

/// Replaces `$(NAME)` with the value of an earlier variable; `$$` is a literal `$`; unknown
/// references stay as written (upstream's `expansion.Expand`).
pub fn expand(input: &str, env: &[(String, String)]) -> String {
    let lookup = |name: &str| {
        env.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' && i + 1 < bytes.len() {
            match bytes[i + 1] {
                b'$' => {
                    out.push('$');
                    i += 2;
                    continue;
                }
                b'(' => {
                    if let Some(end) = input[i + 2..].find(')') {
                        let name = &input[i + 2..i + 2 + end];
                        match lookup(name) {
                            Some(v) => out.push_str(v),
                            None => out.push_str(&input[i..i + 3 + end]),
                        }
                        i += 3 + end;
                        continue;
                    }
                }
                _ => {}
            }
        }
        // Push one whole UTF-8 character.
        let ch = input[i..].chars().next().unwrap_or('\u{fffd}');
        out.push(ch);
        i += ch.len_utf8().max(1);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion_follows_upstream() {
        let env = vec![
            ("A".to_string(), "1".to_string()),
            ("B".into(), "x y".into()),
        ];
        assert_eq!(expand("$(A)-$(B)", &env), "1-x y");
        assert_eq!(expand("$$(A)", &env), "$(A)");
        assert_eq!(expand("$(C) $A", &env), "$(C) $A");
        assert_eq!(expand("$(A", &env), "$(A");
        assert_eq!(expand("é$(A)", &env), "é1");
    }
}
