//! Strict decoding: unknown fields and wrongly typed values in a request body, reported as
//! upstream's decoder (sigs.k8s.io/json over encoding/json) reports them.
//!
//! The body is walked against the kind's OpenAPI schema rather than compared with a serde round
//! trip, so that `null`s, empty maps and lists, int-or-string and quantity values, and free-form
//! places (RawExtension, FieldsV1) never look unknown, while a misspelled key is found even when
//! its value is null. The typed k8s-openapi decode still runs afterwards as a safety net.

use base64::Engine;
use serde_json::Value;

use super::quantity;
use super::schema::{schemas, short_name, typed_decode, Schemas, Shape, MAX_DEPTH};

/// Unknown fields in `obj`, for `?fieldValidation=Strict|Warn`: one path per field, in
/// upstream's strict-decoding notation (`spec.template.spec.containers[0].imagee`); upstream
/// words each as `unknown field "<path>"`. Type mismatches (a string where an integer belongs,
/// a malformed quantity, timestamp or base64 value) are Err carrying the whole message of
/// upstream's 400, e.g. `Deployment in version "v1" cannot be handled as a Deployment: json:
/// cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32`.
/// Kinds without a schema report nothing. Duplicated keys cannot be seen here: they are gone
/// once the body is a `Value`.
pub fn unknown_fields(group: &str, kind: &str, obj: &Value) -> Result<Vec<String>, String> {
    let schemas = schemas();
    let Some(root) = schemas.root(group, kind) else {
        return Ok(Vec::new());
    };
    let prefix = format!("{kind} in version \"v1\" cannot be handled as a {kind}: ");
    let mut walk = Walk {
        schemas,
        unknown: Vec::new(),
        type_error: None,
        go_path: Vec::new(),
    };
    walk.value(root, obj, "", kind, 0);
    if let Some(err) = walk.type_error {
        return Err(format!("{prefix}{err}"));
    }
    if let Some(Err(msg)) = typed_decode(group, kind, &without_null_items(obj, 0)) {
        return Err(format!("{prefix}{msg}"));
    }
    Ok(walk.unknown)
}

struct Walk<'s> {
    schemas: &'s Schemas,
    unknown: Vec<String>,
    type_error: Option<String>,
    /// Field names from the root, as encoding/json records them for type errors.
    go_path: Vec<String>,
}

fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".to_string(),
        Value::Bool(_) => "bool".to_string(),
        Value::Number(_) => "number".to_string(),
        Value::String(_) => "string".to_string(),
        Value::Array(_) => "array".to_string(),
        Value::Object(_) => "object".to_string(),
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

impl Walk<'_> {
    fn mismatch(&mut self, what: String, shape: Shape<'_>, parent: &str) {
        if self.type_error.is_some() {
            return;
        }
        let ty = self.schemas.go_type(shape, 0);
        self.type_error = Some(if self.go_path.is_empty() {
            format!("json: cannot unmarshal {what} into Go value of type {ty}")
        } else {
            format!(
                "json: cannot unmarshal {what} into Go struct field {parent}.{} of type {ty}",
                self.go_path.join(".")
            )
        });
    }

    fn fail(&mut self, msg: String) {
        if self.type_error.is_none() {
            self.type_error = Some(msg);
        }
    }

    /// Checks `v` against `shape`; `path` is the strict-error path, `parent` the Go struct that
    /// holds the current field.
    fn value(&mut self, shape: Shape<'_>, v: &Value, path: &str, parent: &str, depth: usize) {
        if v.is_null() {
            return;
        }
        if depth > MAX_DEPTH {
            self.fail("json: exceeded max depth".to_string());
            return;
        }
        match shape {
            Shape::Struct(name, props) => {
                let Some(m) = v.as_object() else {
                    return self.mismatch(describe(v), shape, parent);
                };
                for (k, child) in m {
                    match props.get(k) {
                        Some(s) => {
                            let s = self.schemas.shape(s);
                            self.go_path.push(k.clone());
                            self.value(s, child, &join(path, k), short_name(name), depth + 1);
                            self.go_path.pop();
                        }
                        None => self.unknown.push(join(path, k)),
                    }
                }
            }
            Shape::Map(items) => {
                let Some(m) = v.as_object() else {
                    return self.mismatch(describe(v), shape, parent);
                };
                let s = self.schemas.shape(items);
                for (k, child) in m {
                    self.value(s, child, &join(path, k), parent, depth + 1);
                }
            }
            Shape::List(items) => {
                let Some(a) = v.as_array() else {
                    return self.mismatch(describe(v), shape, parent);
                };
                let s = self.schemas.shape(items);
                for (i, child) in a.iter().enumerate() {
                    self.value(s, child, &format!("{path}[{i}]"), parent, depth + 1);
                }
            }
            Shape::Str => {
                if !v.is_string() {
                    self.mismatch(describe(v), shape, parent);
                }
            }
            Shape::Bytes => match v.as_str() {
                Some(text) => {
                    if let Some(at) = base64_error(text) {
                        self.fail(format!("illegal base64 data at input byte {at}"));
                    }
                }
                None => self.mismatch(describe(v), shape, parent),
            },
            Shape::Int(format) => {
                let fits = match format {
                    "int32" => v.as_i64().is_some_and(|n| i32::try_from(n).is_ok()),
                    _ => v.as_i64().is_some(),
                };
                if !fits {
                    let what = match v {
                        Value::Number(n) => format!("number {n}"),
                        _ => describe(v),
                    };
                    self.mismatch(what, shape, parent);
                }
            }
            Shape::Float => {
                if !v.is_number() {
                    self.mismatch(describe(v), shape, parent);
                }
            }
            Shape::Bool => {
                if !v.is_boolean() {
                    self.mismatch(describe(v), shape, parent);
                }
            }
            Shape::IntOrString => {
                let ok = v.is_string() || v.as_i64().is_some_and(|n| i32::try_from(n).is_ok());
                if !ok {
                    let what = match v {
                        Value::Number(n) => format!("number {n}"),
                        _ => describe(v),
                    };
                    self.fail(format!(
                        "json: cannot unmarshal {what} into Go value of type int32"
                    ));
                }
            }
            Shape::Quantity => match quantity::from_json(v) {
                Some(Ok(_)) => {}
                Some(Err(msg)) => self.fail(msg.to_string()),
                None => self.fail(quantity::FORMAT_ERROR.to_string()),
            },
            Shape::Time | Shape::MicroTime => match v.as_str() {
                Some(text) => {
                    if parse_time(text).is_none() {
                        self.fail(format!(
                            "parsing time {} as \"2006-01-02T15:04:05Z07:00\": cannot parse {} as \"2006\"",
                            super::go_quote(text),
                            super::go_quote(text)
                        ));
                    }
                }
                None => self.fail(format!(
                    "json: cannot unmarshal {} into Go value of type string",
                    describe(v)
                )),
            },
            Shape::Free => {}
        }
    }
}

/// Parses an RFC 3339 timestamp as Go's `time.Parse(time.RFC3339, ...)` accepts it.
pub(crate) fn parse_time(text: &str) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()
}

/// Where standard base64 (newlines ignored, as Go does) stops making sense, if it does.
fn base64_error(text: &str) -> Option<usize> {
    let cleaned: String = text.chars().filter(|c| *c != '\n' && *c != '\r').collect();
    match base64::engine::general_purpose::STANDARD.decode(cleaned.as_bytes()) {
        Ok(_) => None,
        Err(base64::DecodeError::InvalidByte(at, _))
        | Err(base64::DecodeError::InvalidLastSymbol(at, _)) => Some(at),
        Err(_) => Some(cleaned.len()),
    }
}

/// A copy without null list items, which Go decodes as zero values but serde refuses.
fn without_null_items(v: &Value, depth: usize) -> Value {
    if depth > MAX_DEPTH {
        return Value::Null;
    }
    match v {
        Value::Array(a) => Value::Array(
            a.iter()
                .filter(|x| !x.is_null())
                .map(|x| without_null_items(x, depth + 1))
                .collect(),
        ),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| (k.clone(), without_null_items(x, depth + 1)))
                .collect(),
        ),
        other => other.clone(),
    }
}
