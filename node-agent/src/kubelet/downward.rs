//! The downward API: values a pod may learn about itself (`fieldRef`, `resourceFieldRef`), as
//! upstream's kubelet computes them for env `valueFrom` and downwardAPI volume files, plus the
//! resource quantity arithmetic (`100m`, `1Gi`, `1e3`) that both need.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// Why a downward API value could not be produced; the texts are upstream's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DownwardError {
    /// The field path names nothing the downward API exposes.
    #[error("unsupported fieldPath: {0}")]
    UnsupportedField(String),
    /// A subscript on a field that is not a map.
    #[error("fieldPath {0:?} does not support subscript")]
    NoSubscript(String),
    /// A `metadata.labels['k']` subscript that is not a valid key.
    #[error("invalid key subscript in {0}")]
    InvalidSubscript(String),
    /// The resource names nothing the downward API exposes.
    #[error("unsupported container resource : {0}")]
    UnsupportedResource(String),
    /// `resourceFieldRef.containerName` names no container of the pod.
    #[error("container {0} not found")]
    ContainerNotFound(String),
    /// A quantity string that is not in Kubernetes' quantity syntax.
    #[error(
        "quantity {0:?}: quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
    )]
    QuantityFormat(String),
    /// A quantity whose value does not fit the integer asked for.
    #[error("quantity {0:?} is out of range")]
    QuantityRange(String),
    /// A divisor of zero or below.
    #[error("divisor {0:?} must be positive")]
    Divisor(String),
}

/// The value of one `fieldRef.fieldPath` for the pod, formatted as upstream writes it into env
/// vars and volume files (label and annotation maps as sorted `k="v"` lines, IP lists joined
/// by commas).
pub fn field_value(pod: &Pod, field_path: &str) -> Result<String, DownwardError> {
    let meta = &pod.metadata;
    if let Some((path, key)) = split_subscript(field_path) {
        // Annotation keys are checked case-insensitively, label keys as they are (upstream).
        let (map, checked) = match path {
            "metadata.labels" => (&meta.labels, key.to_string()),
            "metadata.annotations" => (&meta.annotations, key.to_lowercase()),
            _ => return Err(DownwardError::NoSubscript(field_path.to_string())),
        };
        if !valid_subscript(&checked) {
            return Err(DownwardError::InvalidSubscript(field_path.to_string()));
        }
        return Ok(map
            .as_ref()
            .and_then(|m| m.get(key))
            .cloned()
            .unwrap_or_default());
    }
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    let joined_ips = |ips: Option<Vec<String>>| ips.unwrap_or_default().join(",");
    Ok(match field_path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => format_map(meta.labels.as_ref()),
        "metadata.annotations" => format_map(meta.annotations.as_ref()),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.hostIP" => status.and_then(|s| s.host_ip.clone()).unwrap_or_default(),
        "status.hostIPs" => joined_ips(
            status
                .and_then(|s| s.host_ips.as_ref())
                .map(|v| v.iter().map(|i| i.ip.clone()).collect()),
        ),
        "status.podIP" => status.and_then(|s| s.pod_ip.clone()).unwrap_or_default(),
        "status.podIPs" => joined_ips(
            status
                .and_then(|s| s.pod_ips.as_ref())
                .map(|v| v.iter().map(|i| i.ip.clone()).collect()),
        ),
        _ => return Err(DownwardError::UnsupportedField(field_path.to_string())),
    })
}

/// The value of one `resourceFieldRef` for a container of the pod: the request or limit divided
/// by `divisor` (default 1) and rounded up, with unset limits taken from the node's allocatable
/// resources as upstream does.
pub fn resource_value(
    pod: &Pod,
    container_name: &str,
    resource: &str,
    divisor: Option<&Quantity>,
    allocatable: &BTreeMap<String, Quantity>,
) -> Result<String, DownwardError> {
    let container = find_container(pod, container_name)
        .ok_or_else(|| DownwardError::ContainerNotFound(container_name.to_string()))?;
    let resources = container.resources.as_ref();
    let (kind, name) = resource
        .split_once('.')
        .ok_or_else(|| DownwardError::UnsupportedResource(resource.to_string()))?;
    let supported =
        matches!(name, "cpu" | "memory" | "ephemeral-storage") || name.starts_with("hugepages-");
    if !supported {
        return Err(DownwardError::UnsupportedResource(resource.to_string()));
    }
    let value = match kind {
        "limits" => {
            let own = resources
                .and_then(|r| r.limits.as_ref())
                .and_then(|l| l.get(name));
            let unset = match own {
                None => true,
                Some(q) => parse_quantity(&q.0)?.is_zero(),
            };
            // Hugepages are never overcommitted, so upstream does not default them.
            if unset && !name.starts_with("hugepages-") {
                allocatable.get(name).or(own)
            } else {
                own
            }
        }
        "requests" => resources
            .and_then(|r| r.requests.as_ref())
            .and_then(|l| l.get(name)),
        _ => return Err(DownwardError::UnsupportedResource(resource.to_string())),
    };
    let value = match value {
        Some(q) => parse_quantity(&q.0)?,
        None => ParsedQuantity::ZERO,
    };
    let divisor = match divisor {
        Some(d) if !parse_quantity(&d.0)?.is_zero() => parse_quantity(&d.0)?,
        _ => ParsedQuantity::ONE,
    };
    let result = if name == "cpu" {
        ceil_div(value.scaled(3)?, divisor.scaled(3)?, &divisor)?
    } else {
        ceil_div(value.scaled(0)?, divisor.scaled(0)?, &divisor)?
    };
    Ok(result.to_string())
}

/// `ceil(a / b)` for a positive `b`, as upstream's `math.Ceil(float64(a) / float64(b))` but exact.
fn ceil_div(a: i64, b: i64, divisor: &ParsedQuantity) -> Result<i64, DownwardError> {
    if b <= 0 {
        return Err(DownwardError::Divisor(divisor.text.clone()));
    }
    let q = a.div_euclid(b);
    Ok(if a.rem_euclid(b) != 0 { q + 1 } else { q })
}

fn find_container<'a>(pod: &'a Pod, name: &str) -> Option<&'a Container> {
    let spec = pod.spec.as_ref()?;
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == name)
}

/// Splits `metadata.labels['key']` into the path and the key, as upstream's
/// `SplitMaybeSubscriptedPath`.
fn split_subscript(field_path: &str) -> Option<(&str, &str)> {
    let inner = field_path.strip_suffix("']")?;
    let (path, key) = inner.split_once("['")?;
    if path.is_empty() {
        return None;
    }
    Some((path, key))
}

/// A qualified name (`[prefix/]name`), which label and annotation keys must be.
fn valid_subscript(key: &str) -> bool {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|l| {
                !l.is_empty()
                    && l.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            })
    });
    name_ok && prefix_ok
}

/// Upstream's `FormatMap`: one `key="value"` line per entry, sorted, value quoted as Go's `%q`.
fn format_map(map: Option<&BTreeMap<String, String>>) -> String {
    map.map(|m| {
        m.iter()
            .map(|(k, v)| format!("{k}={}", go_quote(v)))
            .collect::<Vec<_>>()
            .join("\n")
    })
    .unwrap_or_default()
}

/// Go's `strconv.Quote`: printable characters kept, the rest escaped.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() => {
                if (c as u32) < 0x10000 {
                    out.push_str(&format!("\\u{:04x}", c as u32))
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32))
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A quantity parsed exactly: `mantissa × 10^exp10 × 2^exp2`, negated when `negative`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedQuantity {
    negative: bool,
    mantissa: u128,
    exp10: i32,
    exp2: u32,
    text: String,
}

impl ParsedQuantity {
    const ZERO: ParsedQuantity = ParsedQuantity {
        negative: false,
        mantissa: 0,
        exp10: 0,
        exp2: 0,
        text: String::new(),
    };
    const ONE: ParsedQuantity = ParsedQuantity {
        negative: false,
        mantissa: 1,
        exp10: 0,
        exp2: 0,
        text: String::new(),
    };

    /// Whether the quantity is zero (upstream treats a zero limit or divisor as unset).
    pub fn is_zero(&self) -> bool {
        self.mantissa == 0
    }

    /// `ceil(q × 10^scale)` (away from zero for negatives), as upstream's `ScaledValue`: 0 is the
    /// plain value (bytes), 3 milli-units (CPU).
    pub fn scaled(&self, scale: i32) -> Result<i64, DownwardError> {
        let range = || DownwardError::QuantityRange(self.text.clone());
        let mut n = self
            .mantissa
            .checked_mul(1u128.checked_shl(self.exp2).ok_or_else(range)?)
            .ok_or_else(range)?;
        let e = self.exp10 + scale;
        if e >= 0 {
            n = n
                .checked_mul(10u128.checked_pow(e as u32).ok_or_else(range)?)
                .ok_or_else(range)?;
        } else if n != 0 {
            n = match 10u128.checked_pow(e.unsigned_abs()) {
                Some(d) => n.div_ceil(d),
                // Smaller than any unit of the scale, but not zero: rounds up to one.
                None => 1,
            };
        }
        let v = i64::try_from(n).map_err(|_| range())?;
        Ok(if self.negative { -v } else { v })
    }
}

/// Parses a Kubernetes quantity (`100m`, `1Gi`, `1e3`, `0.5`, `-2k`) exactly.
pub fn parse_quantity(q: &str) -> Result<ParsedQuantity, DownwardError> {
    let format = || DownwardError::QuantityFormat(q.to_string());
    let range = || DownwardError::QuantityRange(q.to_string());
    let (negative, rest) = match q.as_bytes().first() {
        Some(b'-') => (true, &q[1..]),
        Some(b'+') => (false, &q[1..]),
        _ => (false, q),
    };
    let number_len = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(number_len);
    let (int_part, frac_part) = match number.split_once('.') {
        Some((i, f)) => (i, f),
        None => (number, ""),
    };
    if (int_part.is_empty() && frac_part.is_empty()) || frac_part.contains('.') {
        return Err(format());
    }
    let mut mantissa: u128 = 0;
    for d in int_part.bytes().chain(frac_part.bytes()) {
        mantissa = mantissa
            .checked_mul(10)
            .and_then(|m| m.checked_add(u128::from(d - b'0')))
            .ok_or_else(range)?;
    }
    let mut exp10 = -i32::try_from(frac_part.len()).map_err(|_| range())?;
    let mut exp2 = 0;
    match suffix {
        "" => {}
        "Ki" => exp2 = 10,
        "Mi" => exp2 = 20,
        "Gi" => exp2 = 30,
        "Ti" => exp2 = 40,
        "Pi" => exp2 = 50,
        "Ei" => exp2 = 60,
        "n" => exp10 -= 9,
        "u" => exp10 -= 6,
        "m" => exp10 -= 3,
        "k" => exp10 += 3,
        "M" => exp10 += 6,
        "G" => exp10 += 9,
        "T" => exp10 += 12,
        "P" => exp10 += 15,
        "E" => exp10 += 18,
        s if s.starts_with(['e', 'E']) => {
            let digits = s[1..].trim_start_matches(['+', '-']);
            if digits.is_empty()
                || !digits.bytes().all(|b| b.is_ascii_digit())
                || s[1..].len() - digits.len() > 1
            {
                return Err(format());
            }
            let e: i32 = s[1..].parse().map_err(|_| range())?;
            exp10 = exp10.checked_add(e).ok_or_else(range)?;
        }
        _ => return Err(format()),
    }
    Ok(ParsedQuantity {
        negative: negative && mantissa != 0,
        mantissa,
        exp10,
        exp2,
        text: q.to_string(),
    })
}

/// A quantity in milli-units, rounded up (CPU requests and limits in millicores).
pub fn quantity_millis(q: &Quantity) -> Result<i64, DownwardError> {
    parse_quantity(&q.0)?.scaled(3)
}

/// A quantity in whole units, rounded up (memory and storage in bytes).
pub fn quantity_bytes(q: &Quantity) -> Result<i64, DownwardError> {
    parse_quantity(&q.0)?.scaled(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{HostIP, PodIP, PodSpec, PodStatus, ResourceRequirements};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn q(s: &str) -> Quantity {
        Quantity(s.to_string())
    }

    fn pod() -> Pod {
        let mut limits = BTreeMap::new();
        limits.insert("cpu".to_string(), q("250m"));
        let mut requests = BTreeMap::new();
        requests.insert("cpu".to_string(), q("100m"));
        requests.insert("memory".to_string(), q("64Mi"));
        Pod {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("prod".into()),
                uid: Some("1234-abcd".into()),
                labels: Some(BTreeMap::from([
                    ("app".to_string(), "web".to_string()),
                    ("tier".to_string(), "front \"end\"\n".to_string()),
                ])),
                annotations: Some(BTreeMap::from([(
                    "example.com/owner".to_string(),
                    "ops".to_string(),
                )])),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some("node-1".into()),
                service_account_name: Some("builder".into()),
                containers: vec![Container {
                    name: "app".into(),
                    resources: Some(ResourceRequirements {
                        limits: Some(limits),
                        requests: Some(requests),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                init_containers: Some(vec![Container {
                    name: "init".into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            status: Some(PodStatus {
                host_ip: Some("10.0.0.5".into()),
                host_ips: Some(vec![
                    HostIP {
                        ip: "10.0.0.5".into(),
                    },
                    HostIP {
                        ip: "fd00::5".into(),
                    },
                ]),
                pod_ip: Some("10.244.1.7".into()),
                pod_ips: Some(vec![
                    PodIP {
                        ip: "10.244.1.7".into(),
                    },
                    PodIP {
                        ip: "fd00:1::7".into(),
                    },
                ]),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn field_values_follow_upstream_formats() {
        let p = pod();
        let f = |path| field_value(&p, path).unwrap();
        assert_eq!(f("metadata.name"), "web");
        assert_eq!(f("metadata.namespace"), "prod");
        assert_eq!(f("metadata.uid"), "1234-abcd");
        assert_eq!(
            f("metadata.labels"),
            "app=\"web\"\ntier=\"front \\\"end\\\"\\n\""
        );
        assert_eq!(f("metadata.annotations"), "example.com/owner=\"ops\"");
        assert_eq!(f("metadata.labels['app']"), "web");
        assert_eq!(f("metadata.labels['absent']"), "");
        assert_eq!(f("metadata.annotations['example.com/owner']"), "ops");
        assert_eq!(f("spec.nodeName"), "node-1");
        assert_eq!(f("spec.serviceAccountName"), "builder");
        assert_eq!(f("status.hostIP"), "10.0.0.5");
        assert_eq!(f("status.hostIPs"), "10.0.0.5,fd00::5");
        assert_eq!(f("status.podIP"), "10.244.1.7");
        assert_eq!(f("status.podIPs"), "10.244.1.7,fd00:1::7");
    }

    #[test]
    fn unknown_fields_and_bad_subscripts_are_errors() {
        let p = pod();
        assert_eq!(
            field_value(&p, "spec.hostname").unwrap_err().to_string(),
            "unsupported fieldPath: spec.hostname"
        );
        assert!(matches!(
            field_value(&p, "metadata.labels['bad key!']"),
            Err(DownwardError::InvalidSubscript(_))
        ));
        assert_eq!(
            field_value(&p, "spec.nodeName['x']")
                .unwrap_err()
                .to_string(),
            "fieldPath \"spec.nodeName['x']\" does not support subscript"
        );
        // Annotation keys may have capitals; label keys are checked as written.
        assert_eq!(
            field_value(&p, "metadata.annotations['Example.com/Owner']").unwrap(),
            ""
        );
        assert!(field_value(&p, "metadata.labels['App']").is_ok());
        assert!(matches!(
            field_value(&p, "metadata.labels['Example.com/app']"),
            Err(DownwardError::InvalidSubscript(_))
        ));
        assert!(matches!(
            field_value(&p, "metadata.labels['-bad']"),
            Err(DownwardError::InvalidSubscript(_))
        ));
    }

    #[test]
    fn quantities_parse_exactly() {
        let millis = |s: &str| quantity_millis(&q(s)).unwrap();
        let bytes = |s: &str| quantity_bytes(&q(s)).unwrap();
        assert_eq!(millis("100m"), 100);
        assert_eq!(millis("1"), 1000);
        assert_eq!(millis("0.5"), 500);
        assert_eq!(millis(".25"), 250);
        assert_eq!(millis("1.5k"), 1_500_000);
        assert_eq!(millis("1u"), 1, "below a milli rounds up");
        assert_eq!(millis("-100m"), -100);
        assert_eq!(bytes("1Gi"), 1 << 30);
        assert_eq!(bytes("1.5Gi"), 3 << 29);
        assert_eq!(bytes("1e3"), 1000);
        assert_eq!(bytes("1E3"), 1000);
        assert_eq!(bytes("2e-1"), 1, "fractions of a byte round up");
        assert_eq!(bytes("1E"), 1_000_000_000_000_000_000);
        assert_eq!(bytes("128974848"), 128_974_848);
        assert_eq!(bytes("129M"), 129_000_000);
        assert_eq!(bytes("123Mi"), 123 * 1024 * 1024);
        assert_eq!(bytes("0.5"), 1);
        assert_eq!(bytes("1e-100"), 1);
        assert_eq!(bytes("0"), 0);
        for bad in ["", "1K", "abc", "1.2.3", "1e", "1Gi3", "--1", "1 Gi", "."] {
            assert!(
                matches!(parse_quantity(bad), Err(DownwardError::QuantityFormat(_))),
                "{bad:?} should not parse"
            );
        }
        assert!(matches!(
            quantity_bytes(&q("10Ei")),
            Err(DownwardError::QuantityRange(_))
        ));
        assert!(matches!(
            quantity_bytes(&q("1e400")),
            Err(DownwardError::QuantityRange(_))
        ));
    }

    #[test]
    fn resource_values_divide_and_round_up() {
        let p = pod();
        let alloc = BTreeMap::from([
            ("cpu".to_string(), q("4")),
            ("memory".to_string(), q("8Gi")),
            ("ephemeral-storage".to_string(), q("100G")),
        ]);
        let v = |ctr: &str, r: &str, d: Option<&str>| {
            resource_value(&p, ctr, r, d.map(q).as_ref(), &alloc)
        };
        // 250m with the default divisor of 1 rounds up to one core.
        assert_eq!(v("app", "limits.cpu", None).unwrap(), "1");
        assert_eq!(v("app", "limits.cpu", Some("1m")).unwrap(), "250");
        assert_eq!(v("app", "requests.cpu", Some("1m")).unwrap(), "100");
        assert_eq!(v("app", "requests.memory", None).unwrap(), "67108864");
        assert_eq!(v("app", "requests.memory", Some("1Mi")).unwrap(), "64");
        assert_eq!(v("app", "requests.memory", Some("1G")).unwrap(), "1");
        // Unset limits are the node's allocatable.
        assert_eq!(v("app", "limits.memory", Some("1Gi")).unwrap(), "8");
        assert_eq!(v("init", "limits.cpu", None).unwrap(), "4");
        assert_eq!(
            v("app", "limits.ephemeral-storage", Some("1G")).unwrap(),
            "100"
        );
        // Unset requests are zero.
        assert_eq!(v("init", "requests.memory", None).unwrap(), "0");
        // A zero divisor means the default.
        assert_eq!(v("app", "limits.cpu", Some("0")).unwrap(), "1");
        assert_eq!(
            v("ghost", "limits.cpu", None).unwrap_err().to_string(),
            "container ghost not found"
        );
        assert_eq!(
            v("app", "limits.gpu", None).unwrap_err().to_string(),
            "unsupported container resource : limits.gpu"
        );
    }
}
