//! Validation of API objects as upstream Kubernetes (v1.33) does it, so that clients see the
//! same 422 causes, and strict decoding (`?fieldValidation=Strict|Warn`) of request bodies.
//!
//! Objects are plain `serde_json::Value`s that have already been through
//! [`super::defaults::apply`]. Each kind has a small validator in a submodule; the shared pieces
//! (field errors, paths, name syntax, Go-style value printing) live here.

mod apps;
mod batch;
mod container;
mod core;
mod cron;
mod meta;
mod other;
mod pod;
mod policy;
pub(crate) mod quantity;
mod resources;
pub(crate) mod schema;
mod service;
mod storage;
mod strict;
mod volume;

use serde_json::{Map, Value};

pub(crate) use strict::parse_time;
pub use strict::unknown_fields;

/// One invalid field, as upstream's `field.Error`: the 422 Status carries one cause per error.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    /// Path of the field, upstream-style: `spec.containers[0].image`, `data[key]`.
    pub field: String,
    pub kind: FieldErrorKind,
    /// The bad value, or Null. Values that upstream prints as Go syntax are carried as
    /// `{"$go": "<rendered>"}`; `{"$omit": true}` means upstream prints no value.
    pub value: Value,
    /// Extra explanation; for NotSupported the list of allowed values.
    pub detail: String,
}

/// The kinds of field error upstream has (`field.ErrorType`), which decide the cause reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldErrorKind {
    Required,
    Invalid,
    /// The value is not one of a fixed set; `detail` lists the supported values.
    NotSupported,
    Duplicate,
    Forbidden,
    TooLong,
    TooMany,
    /// A reference to something that does not exist (e.g. a volume mount naming no volume).
    NotFound,
}

impl FieldError {
    /// The Status cause reason upstream uses for this kind of error.
    pub fn reason(&self) -> &'static str {
        match self.kind {
            FieldErrorKind::Required => "FieldValueRequired",
            FieldErrorKind::Invalid => "FieldValueInvalid",
            FieldErrorKind::NotSupported => "FieldValueNotSupported",
            FieldErrorKind::Duplicate => "FieldValueDuplicate",
            FieldErrorKind::Forbidden => "FieldValueForbidden",
            FieldErrorKind::TooLong => "FieldValueTooLong",
            FieldErrorKind::TooMany => "FieldValueTooMany",
            FieldErrorKind::NotFound => "FieldValueNotFound",
        }
    }

    /// The cause message exactly as upstream formats `field.Error.ErrorBody()`, e.g.
    /// `Required value` or `Unsupported value: "x": supported values: "Always", "Never"`.
    pub fn message(&self) -> String {
        let ty = match self.kind {
            FieldErrorKind::Required => "Required value",
            FieldErrorKind::Invalid => "Invalid value",
            FieldErrorKind::NotSupported => "Unsupported value",
            FieldErrorKind::Duplicate => "Duplicate value",
            FieldErrorKind::Forbidden => "Forbidden",
            FieldErrorKind::TooLong => "Too long",
            FieldErrorKind::TooMany => "Too many",
            FieldErrorKind::NotFound => "Not found",
        };
        let omit = matches!(
            self.kind,
            FieldErrorKind::Required | FieldErrorKind::Forbidden | FieldErrorKind::TooLong
        ) || self.value.get("$omit").is_some();
        let mut s = if omit {
            ty.to_string()
        } else {
            format!("{ty}: {}", go_value(&self.value))
        };
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }

    /// `field: message`, as upstream's `field.Error.Error()`.
    #[cfg(test)]
    pub fn to_line(&self) -> String {
        format!("{}: {}", self.field, self.message())
    }
}

/// Every problem with `obj` of this kind, after defaulting; `old` is the stored object on update
/// (immutable fields are checked against it), None on create. Empty means valid. Unknown kinds
/// get only the generic metadata checks.
pub fn validate(group: &str, kind: &str, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut e = Errs::default();
    if !obj.is_object() {
        e.invalid(&P::root(""), Value::Null, "must be a JSON object");
        return e.0;
    }
    match (group, kind) {
        ("", "Pod") => pod::validate_pod(obj, old, &mut e),
        ("", "PodTemplate") => pod::validate_pod_template(obj, old, &mut e),
        ("", "Namespace") => core::validate_namespace(obj, old, &mut e),
        ("", "Node") => core::validate_node(obj, old, &mut e),
        ("", "Service") => service::validate_service(obj, old, &mut e),
        ("", "Endpoints") => service::validate_endpoints(obj, old, &mut e),
        ("", "ConfigMap") => core::validate_config_map(obj, old, &mut e),
        ("", "Secret") => core::validate_secret(obj, old, &mut e),
        ("", "ServiceAccount") => core::validate_service_account(obj, old, &mut e),
        ("", "Event") => other::validate_core_event(obj, old, &mut e),
        ("", "PersistentVolume") => storage::validate_pv(obj, old, &mut e),
        ("", "PersistentVolumeClaim") => storage::validate_pvc(obj, old, &mut e),
        ("", "ResourceQuota") => core::validate_resource_quota(obj, old, &mut e),
        ("", "LimitRange") => core::validate_limit_range(obj, old, &mut e),
        ("apps", "Deployment") => apps::validate_deployment(obj, old, &mut e),
        ("apps", "ReplicaSet") => apps::validate_replica_set(obj, old, &mut e),
        ("apps", "DaemonSet") => apps::validate_daemon_set(obj, old, &mut e),
        ("apps", "StatefulSet") => apps::validate_stateful_set(obj, old, &mut e),
        ("apps", "ControllerRevision") => apps::validate_controller_revision(obj, old, &mut e),
        ("batch", "Job") => batch::validate_job(obj, old, &mut e),
        ("batch", "CronJob") => batch::validate_cron_job(obj, old, &mut e),
        ("coordination.k8s.io", "Lease") => other::validate_lease(obj, old, &mut e),
        ("discovery.k8s.io", "EndpointSlice") => other::validate_endpoint_slice(obj, old, &mut e),
        ("rbac.authorization.k8s.io", "Role") => other::validate_role(obj, old, true, &mut e),
        ("rbac.authorization.k8s.io", "ClusterRole") => {
            other::validate_role(obj, old, false, &mut e)
        }
        ("rbac.authorization.k8s.io", "RoleBinding") => {
            other::validate_role_binding(obj, old, true, &mut e)
        }
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => {
            other::validate_role_binding(obj, old, false, &mut e)
        }
        ("networking.k8s.io", "NetworkPolicy") => other::validate_network_policy(obj, old, &mut e),
        ("scheduling.k8s.io", "PriorityClass") => other::validate_priority_class(obj, old, &mut e),
        ("policy", "PodDisruptionBudget") => policy::validate_pdb(obj, old, &mut e),
        ("storage.k8s.io", "StorageClass") => storage::validate_storage_class(obj, old, &mut e),
        ("events.k8s.io", "Event") => other::validate_events_event(obj, old, &mut e),
        _ => meta::object_meta(obj, old, true, NameRule::Subdomain, &mut e),
    }
    e.0
}

// ---------------------------------------------------------------------------------------------
// Paths and error collection.

/// A field path in upstream's notation (`a.b[0].c[key]`).
#[derive(Clone, Debug)]
pub(crate) struct P(String);

impl P {
    /// A path starting at the named top-level field ("" for the whole object).
    pub(crate) fn root(name: &str) -> P {
        P(name.to_string())
    }
    /// `self.name`.
    pub(crate) fn child(&self, name: &str) -> P {
        if self.0.is_empty() {
            P(name.to_string())
        } else {
            P(format!("{}.{name}", self.0))
        }
    }
    /// `self[i]`.
    pub(crate) fn index(&self, i: usize) -> P {
        P(format!("{}[{i}]", self.0))
    }
    /// `self[key]`, as map entries are named.
    pub(crate) fn key(&self, k: &str) -> P {
        P(format!("{}[{k}]", self.0))
    }
    /// The path text.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

/// The errors found so far, with one constructor per upstream `field.*` helper.
#[derive(Default, Debug)]
pub(crate) struct Errs(pub(crate) Vec<FieldError>);

impl Errs {
    fn push(&mut self, p: &P, kind: FieldErrorKind, value: Value, detail: String) {
        self.0.push(FieldError {
            field: p.0.clone(),
            kind,
            value,
            detail,
        });
    }
    /// `field.Required`.
    pub(crate) fn required(&mut self, p: &P, detail: &str) {
        self.push(p, FieldErrorKind::Required, Value::Null, detail.to_string());
    }
    /// `field.Invalid`.
    pub(crate) fn invalid(&mut self, p: &P, value: impl Into<Value>, detail: &str) {
        self.push(p, FieldErrorKind::Invalid, value.into(), detail.to_string());
    }
    /// `field.NotSupported`, listing the allowed values.
    pub(crate) fn not_supported(&mut self, p: &P, value: impl Into<Value>, allowed: &[&str]) {
        let detail = if allowed.is_empty() {
            String::new()
        } else {
            let quoted: Vec<String> = allowed.iter().map(|a| go_quote(a)).collect();
            format!("supported values: {}", quoted.join(", "))
        };
        self.push(p, FieldErrorKind::NotSupported, value.into(), detail);
    }
    /// `field.Duplicate`.
    pub(crate) fn duplicate(&mut self, p: &P, value: impl Into<Value>) {
        self.push(p, FieldErrorKind::Duplicate, value.into(), String::new());
    }
    /// `field.Forbidden`.
    pub(crate) fn forbidden(&mut self, p: &P, detail: &str) {
        self.push(
            p,
            FieldErrorKind::Forbidden,
            Value::Null,
            detail.to_string(),
        );
    }
    /// `field.TooLong` with a byte limit.
    pub(crate) fn too_long(&mut self, p: &P, max: usize) {
        self.push(
            p,
            FieldErrorKind::TooLong,
            Value::Null,
            format!("may not be more than {max} bytes"),
        );
    }
    /// `field.TooMany`.
    pub(crate) fn too_many(&mut self, p: &P, actual: usize, max: usize) {
        self.push(
            p,
            FieldErrorKind::TooMany,
            Value::from(actual),
            format!("must have at most {max} items"),
        );
    }
    /// `field.NotFound`.
    pub(crate) fn not_found(&mut self, p: &P, value: impl Into<Value>) {
        self.push(p, FieldErrorKind::NotFound, value.into(), String::new());
    }
    /// One Invalid error per message, as upstream loops over `validation.Is*` results.
    pub(crate) fn invalid_each(&mut self, p: &P, value: &str, msgs: Vec<String>) {
        for m in msgs {
            self.invalid(p, value, &m);
        }
    }
    /// `field is immutable` when the new value differs from the old one.
    pub(crate) fn immutable(&mut self, p: &P, new: &Value, old: &Value, shown: Value) {
        if !same(new, old) {
            self.invalid(p, shown, "field is immutable");
        }
    }
    /// `ValidateNonnegativeField` on an optional integer.
    pub(crate) fn nonnegative(&mut self, p: &P, v: Option<i64>) {
        if let Some(n) = v {
            if n < 0 {
                self.invalid(p, n, "must be greater than or equal to 0");
            }
        }
    }
}

/// A string field that must be one of `allowed` (empty is Required).
pub(crate) fn enum_field(obj: &Value, field: &str, p: &P, allowed: &[&str], e: &mut Errs) {
    let v = s(obj, field);
    if v.is_empty() {
        e.required(&p.child(field), "");
    } else if !allowed.contains(&v) {
        e.not_supported(&p.child(field), v, allowed);
    }
}

/// How an object's name must be spelled.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum NameRule {
    Subdomain,
    Label,
    Dns1035,
    PathSegment,
}

impl NameRule {
    /// Upstream's `ValidateNameFunc(name, prefix)`: with `prefix` (generateName) a trailing dash
    /// is allowed.
    pub(crate) fn check(self, name: &str, prefix: bool) -> Vec<String> {
        let masked;
        let n = if prefix && self != NameRule::PathSegment {
            masked = mask_trailing_dash(name);
            masked.as_str()
        } else {
            name
        };
        match self {
            NameRule::Subdomain => dns1123_subdomain_errors(n),
            NameRule::Label => dns1123_label_errors(n),
            NameRule::Dns1035 => dns1035_label_errors(n),
            NameRule::PathSegment => path_segment_errors(n, prefix),
        }
    }
}

fn mask_trailing_dash(name: &str) -> String {
    // Upstream replaces the last two bytes of "...x-" with "a".
    if name.len() > 1 && name.ends_with('-') {
        let cut = name.len() - 2;
        match name.get(..cut) {
            Some(head) => format!("{head}a"),
            None => name.to_string(),
        }
    } else {
        name.to_string()
    }
}

// ---------------------------------------------------------------------------------------------
// Name and value syntax, with upstream's messages.

const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const DNS1035_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character";
const QNAME_MSG: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const QNAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";

/// Upstream's `RegexError`: message, examples and the regex.
pub(crate) fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    if examples.is_empty() {
        return format!("{msg} (regex used for validation is '{fmt}')");
    }
    let mut s = format!("{msg} (e.g. ");
    for (i, ex) in examples.iter().enumerate() {
        if i > 0 {
            s.push_str(" or ");
        }
        s.push_str(&format!("'{ex}', "));
    }
    s.push_str(&format!("regex used for validation is '{fmt}')"));
    s
}

/// Upstream's `MaxLenError`.
pub(crate) fn max_len_error(n: usize) -> String {
    format!("must be no more than {n} characters")
}

fn is_alnum_lower(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

fn matches_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter().all(|&c| is_alnum_lower(c) || c == b'-')
        && is_alnum_lower(b[0])
        && is_alnum_lower(b[b.len() - 1])
}

fn matches_subdomain(s: &str) -> bool {
    !s.is_empty() && s.split('.').all(matches_label)
}

/// Upstream's `IsDNS1123Label` messages.
pub(crate) fn dns1123_label_errors(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 63 {
        errs.push(max_len_error(63));
    }
    if !matches_label(s) {
        if matches_subdomain(s) {
            errs.push("must not contain dots".to_string());
        } else {
            errs.push(regex_error(
                DNS1123_LABEL_MSG,
                "[a-z0-9]([-a-z0-9]*[a-z0-9])?",
                &["my-name", "123-abc"],
            ));
        }
    }
    errs
}

/// Upstream's `IsDNS1123Subdomain` messages.
pub(crate) fn dns1123_subdomain_errors(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 253 {
        errs.push(max_len_error(253));
    }
    if !matches_subdomain(s) {
        errs.push(regex_error(
            DNS1123_SUBDOMAIN_MSG,
            "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*",
            &["example.com"],
        ));
    }
    errs
}

/// Upstream's `IsDNS1035Label` messages (Service names).
pub(crate) fn dns1035_label_errors(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 63 {
        errs.push(max_len_error(63));
    }
    let b = s.as_bytes();
    let ok = !b.is_empty()
        && b[0].is_ascii_lowercase()
        && b.iter().all(|&c| is_alnum_lower(c) || c == b'-')
        && is_alnum_lower(b[b.len() - 1]);
    if !ok {
        errs.push(regex_error(
            DNS1035_MSG,
            "[a-z]([-a-z0-9]*[a-z0-9])?",
            &["my-name", "abc-123"],
        ));
    }
    errs
}

fn path_segment_errors(s: &str, prefix: bool) -> Vec<String> {
    if !prefix {
        for bad in [".", ".."] {
            if s == bad {
                return vec![format!("may not be '{bad}'")];
            }
        }
    }
    let mut errs = Vec::new();
    for bad in ["/", "%"] {
        if s.contains(bad) {
            errs.push(format!("may not contain '{bad}'"));
        }
    }
    errs
}

fn matches_qname_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.')
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// Upstream's `IsQualifiedName`: an optional DNS subdomain prefix and '/', then a name part.
pub(crate) fn qualified_name_errors(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_string());
            } else {
                for m in dns1123_subdomain_errors(prefix) {
                    errs.push(format!("prefix part {m}"));
                }
            }
            *name
        }
        _ => {
            errs.push(format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(QNAME_MSG, QNAME_FMT, &["MyName", "my.name", "123-abc"])
            ));
            return errs;
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_string());
    } else if name.len() > 63 {
        errs.push(format!("name part {}", max_len_error(63)));
    }
    if !matches_qname_part(name) {
        errs.push(format!(
            "name part {}",
            regex_error(QNAME_MSG, QNAME_FMT, &["MyName", "my.name", "123-abc"])
        ));
    }
    errs
}

/// Upstream's `IsValidLabelValue` messages.
pub(crate) fn label_value_errors(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > 63 {
        errs.push(max_len_error(63));
    }
    if !value.is_empty() && !matches_qname_part(value) {
        errs.push(regex_error(
            LABEL_VALUE_MSG,
            "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?",
            &["MyValue", "my_value", "12345"],
        ));
    }
    errs
}

/// Upstream's `IsConfigMapKey` messages (ConfigMap, Secret and env keys).
pub(crate) fn config_map_key_errors(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > 253 {
        errs.push(max_len_error(253));
    }
    let ok = !value.is_empty()
        && value
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.');
    if !ok {
        errs.push(regex_error(
            "a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
            "[-._a-zA-Z0-9]+",
            &["key.name", "KEY_NAME", "key-name"],
        ));
    }
    if value == "." {
        errs.push("must not be '.'".to_string());
    } else if value == ".." {
        errs.push("must not be '..'".to_string());
    } else if value.starts_with("..") {
        errs.push("must not start with '..'".to_string());
    }
    errs
}

/// Upstream's `IsValidPortName` messages (IANA service names).
pub(crate) fn port_name_errors(port: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if port.len() > 15 {
        errs.push(max_len_error(15));
    }
    if port.is_empty() || !port.bytes().all(|c| is_alnum_lower(c) || c == b'-') {
        errs.push(
            "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".to_string(),
        );
    }
    if !port.bytes().any(|c| c.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)".to_string());
    }
    if port.contains("--") {
        errs.push("must not contain consecutive hyphens".to_string());
    }
    if port.starts_with('-') || port.ends_with('-') {
        errs.push("must not begin or end with a hyphen".to_string());
    }
    errs
}

/// Upstream's `IsValidPortNum` messages.
pub(crate) fn port_num_errors(port: i64) -> Vec<String> {
    if (1..=65535).contains(&port) {
        Vec::new()
    } else {
        vec![range_error(1, 65535)]
    }
}

/// Upstream's `InclusiveRangeError`.
pub(crate) fn range_error(lo: i64, hi: i64) -> String {
    format!("must be between {lo} and {hi}, inclusive")
}

/// Upstream's relaxed environment variable names (the default since v1.32).
pub(crate) fn env_var_name_errors(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.is_empty() {
        errs.push("environment variable name must be non-empty".to_string());
    }
    if value
        .bytes()
        .any(|c| !(0x20..0x7f).contains(&c) || c == b'=')
    {
        errs.push(
            "a valid environment variable name must consist only of printable ASCII characters other than '='"
                .to_string(),
        );
    }
    errs
}

/// Upstream's `IsValidPercent` messages.
pub(crate) fn percent_errors(s: &str) -> Vec<String> {
    let ok =
        s.len() > 1 && s.ends_with('%') && s[..s.len() - 1].bytes().all(|c| c.is_ascii_digit());
    if ok {
        Vec::new()
    } else {
        vec![regex_error(
            "a valid percent string must be a numeric string followed by an ending '%'",
            "[0-9]+%",
            &["1%", "93%"],
        )]
    }
}

/// Parses an IP as Go's `ParseIPSloppy` does (IPv4 octets may have leading zeros).
pub(crate) fn parse_ip_sloppy(s: &str) -> Option<std::net::IpAddr> {
    if s.contains(':') {
        return s
            .parse::<std::net::Ipv6Addr>()
            .ok()
            .map(std::net::IpAddr::V6);
    }
    let parts: Vec<&str> = s.split('.').collect();
    if parts.len() != 4 {
        return None;
    }
    let mut octets = [0u8; 4];
    for (i, p) in parts.iter().enumerate() {
        if p.is_empty() || p.len() > 3 || !p.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        octets[i] = p.parse::<u8>().ok()?;
    }
    Some(std::net::IpAddr::V4(octets.into()))
}

/// Parses `ip/prefix` sloppily; returns the address and prefix length.
pub(crate) fn parse_cidr_sloppy(s: &str) -> Option<(std::net::IpAddr, u8)> {
    let (ip, len) = s.split_once('/')?;
    let ip = parse_ip_sloppy(ip)?;
    if len.is_empty() || len.len() > 3 || !len.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let len: u8 = len.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (len <= max).then_some((ip, len))
}

/// An IP address field, checked as upstream's legacy IP fields are.
pub(crate) fn ip_errors(p: &P, value: &str, e: &mut Errs) {
    if parse_ip_sloppy(value).is_none() {
        e.invalid(
            p,
            value,
            "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
        );
    }
}

/// A CIDR field, checked as upstream's legacy CIDR fields are.
pub(crate) fn cidr_errors(p: &P, value: &str, e: &mut Errs) {
    if parse_cidr_sloppy(value).is_none() {
        e.invalid(
            p,
            value,
            "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
        );
    }
}

// ---------------------------------------------------------------------------------------------
// JSON access helpers: absent, null and wrongly typed values read as empty.

/// The string at `k`, or "".
pub(crate) fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

/// The string at `k`, if there is one.
pub(crate) fn opt_s<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    v.get(k).and_then(Value::as_str)
}

/// The list at `k`, or an empty one.
pub(crate) fn arr<'a>(v: &'a Value, k: &str) -> &'a [Value] {
    v.get(k)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// The object at `k`, if there is one.
pub(crate) fn map<'a>(v: &'a Value, k: &str) -> Option<&'a Map<String, Value>> {
    v.get(k).and_then(Value::as_object)
}

/// The integer at `k`, if there is one.
pub(crate) fn int(v: &Value, k: &str) -> Option<i64> {
    v.get(k).and_then(Value::as_i64)
}

/// Whether `k` is set (present and not null).
pub(crate) fn has(v: &Value, k: &str) -> bool {
    v.get(k).is_some_and(|x| !x.is_null())
}

/// The boolean at `k`, false when unset.
pub(crate) fn boolean(v: &Value, k: &str) -> bool {
    v.get(k).and_then(Value::as_bool).unwrap_or(false)
}

/// The object at `k`, or Null (so chained `.get` calls stay safe).
pub(crate) fn at<'a>(v: &'a Value, k: &str) -> &'a Value {
    v.get(k).unwrap_or(&Value::Null)
}

/// The strings in the list at `k`.
pub(crate) fn str_list(v: &Value, k: &str) -> Vec<String> {
    arr(v, k)
        .iter()
        .filter_map(|x| x.as_str().map(str::to_string))
        .collect()
}

/// Semantic equality as upstream's `apiequality.Semantic.DeepEqual` sees it on decoded Go
/// objects: absent, null, empty string, empty list and empty map are all "unset".
pub(crate) fn same(a: &Value, b: &Value) -> bool {
    same_at(a, b, 0)
}

fn is_unset(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.values().all(is_unset),
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
    }
}

fn same_at(a: &Value, b: &Value, depth: usize) -> bool {
    if depth > schema::MAX_DEPTH {
        return false;
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter().all(|k| {
                same_at(
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                    depth + 1,
                )
            })
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same_at(p, q, depth + 1))
        }
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Object(_) | Value::Array(_), _) | (_, Value::Object(_) | Value::Array(_)) => {
            is_unset(a) && is_unset(b)
        }
        _ if is_unset(a) && is_unset(b) => true,
        _ => a == b,
    }
}

// ---------------------------------------------------------------------------------------------
// Printing values as upstream does (Go's %q, %v and %#v).

/// A value that upstream prints in Go syntax, pre-rendered.
pub(crate) fn go(rendered: String) -> Value {
    let mut m = Map::new();
    m.insert("$go".to_string(), Value::String(rendered));
    Value::Object(m)
}

/// A value that upstream leaves out of the message (`field.OmitValueType`).
pub(crate) fn omit() -> Value {
    let mut m = Map::new();
    m.insert("$omit".to_string(), Value::Bool(true));
    Value::Object(m)
}

/// Go's `strconv.Quote`.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() => {
                if (c as u32) <= 0xffff {
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

/// `map[string]string{"a":"b", ...}` or `map[string]string(nil)` for an absent map.
pub(crate) fn go_string_map(v: Option<&Value>) -> String {
    match v.and_then(Value::as_object) {
        None => "map[string]string(nil)".to_string(),
        Some(m) => {
            let items: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{}:{}", go_quote(k), go_quote(v.as_str().unwrap_or(""))))
                .collect();
            format!("map[string]string{{{}}}", items.join(", "))
        }
    }
}

/// `[]string{"a", "b"}` or `[]string(nil)`.
pub(crate) fn go_string_slice(v: Option<&Value>) -> String {
    match v.and_then(Value::as_array) {
        None => "[]string(nil)".to_string(),
        Some(a) => {
            let items: Vec<String> = a
                .iter()
                .map(|x| go_quote(x.as_str().unwrap_or("")))
                .collect();
            format!("[]string{{{}}}", items.join(", "))
        }
    }
}

/// `v1.LabelSelector{MatchLabels:..., MatchExpressions:...}` as upstream prints a selector.
pub(crate) fn go_label_selector(sel: &Value) -> String {
    let exprs = match sel.get("matchExpressions").and_then(Value::as_array) {
        None => "[]v1.LabelSelectorRequirement(nil)".to_string(),
        Some(list) => {
            let items: Vec<String> = list
                .iter()
                .map(|r| {
                    format!(
                        "v1.LabelSelectorRequirement{{Key:{}, Operator:{}, Values:{}}}",
                        go_quote(s(r, "key")),
                        go_quote(s(r, "operator")),
                        go_string_slice(r.get("values"))
                    )
                })
                .collect();
            format!("[]v1.LabelSelectorRequirement{{{}}}", items.join(", "))
        }
    };
    format!(
        "v1.LabelSelector{{MatchLabels:{}, MatchExpressions:{}}}",
        go_string_map(sel.get("matchLabels")),
        exprs
    )
}

/// A bad value printed as upstream's `ErrorBody` does.
pub(crate) fn go_value(v: &Value) -> String {
    match v {
        Value::Null => "null".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => go_quote(s),
        Value::Object(m) => {
            if let Some(Value::String(raw)) = m.get("$go") {
                return raw.clone();
            }
            if m.values().all(Value::is_string) {
                return go_string_map(Some(v));
            }
            v.to_string()
        }
        Value::Array(a) => {
            if a.iter().all(Value::is_string) {
                go_string_slice(Some(v))
            } else {
                v.to_string()
            }
        }
    }
}

#[cfg(test)]
mod tests;
