//! Kubernetes `Status` errors: every failure a client sees is one, with the HTTP code inside.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// A failed request, as the `Status` object kubectl prints ("Error from server (Reason): ...").
#[derive(Debug, Clone)]
pub struct Status {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    /// `details` (kind, name, causes), which kubectl prints one cause per line.
    pub details: Option<serde_json::Value>,
}

impl Status {
    pub fn unauthorized() -> Status {
        Status {
            code: 401,
            reason: "Unauthorized",
            message: "Unauthorized".into(),
            details: None,
        }
    }

    pub fn bad_request(message: String) -> Status {
        Status {
            code: 400,
            reason: "BadRequest",
            message,
            details: None,
        }
    }

    pub fn unsupported_media_type(content_type: &str) -> Status {
        Status {
            code: 415,
            reason: "UnsupportedMediaType",
            message: format!("the body of the request was in an unknown format - accepted media types include: application/json, application/vnd.kubernetes.protobuf (got {content_type})"),
            details: None,
        }
    }

    /// Any failure with upstream's reason text for its code.
    pub fn new(code: u16, reason: &'static str, message: String) -> Status {
        Status {
            code,
            reason,
            message,
            details: None,
        }
    }

    /// 404 for a named object, with the details clients use to tell which.
    pub fn object_not_found(group: &str, plural: &str, qualified: &str, name: &str) -> Status {
        Status {
            details: Some(json!({"name": name, "group": group, "kind": plural})),
            ..Status::new(404, "NotFound", format!("{qualified} \"{name}\" not found"))
        }
    }

    /// 409 AlreadyExists on create.
    pub fn object_exists(group: &str, plural: &str, qualified: &str, name: &str) -> Status {
        Status {
            details: Some(json!({"name": name, "group": group, "kind": plural})),
            ..Status::new(
                409,
                "AlreadyExists",
                format!("{qualified} \"{name}\" already exists"),
            )
        }
    }

    /// 409 Conflict: the client's resourceVersion is stale. Client-side apply retries on it.
    pub fn conflict(group: &str, plural: &str, qualified: &str, name: &str) -> Status {
        Status {
            details: Some(json!({"name": name, "group": group, "kind": plural})),
            ..Status::new(409, "Conflict", format!("Operation cannot be fulfilled on {qualified} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"))
        }
    }

    /// 422 with causes given as (reason, message, field), as validation reports them.
    pub fn invalid_fields(
        kind: &str,
        group: &str,
        name: &str,
        causes: Vec<(&'static str, String, String)>,
    ) -> Status {
        let qualified_kind = if group.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}.{group}")
        };
        let text: Vec<String> = causes
            .iter()
            .map(|(_, msg, field)| format!("{field}: {msg}"))
            .collect();
        let joined = match text.len() {
            1 => text[0].clone(),
            _ => format!("[{}]", text.join(", ")),
        };
        Status {
            details: Some(json!({
                "name": name,
                "group": group,
                "kind": kind,
                "causes": causes.iter().map(|(reason, msg, field)| json!({
                    "reason": reason, "message": msg, "field": field,
                })).collect::<Vec<_>>(),
            })),
            ..Status::new(
                422,
                "Invalid",
                format!("{qualified_kind} \"{name}\" is invalid: {joined}"),
            )
        }
    }

    /// 410: a resourceVersion or continue token older than the store's history.
    pub fn expired(message: String) -> Status {
        Status::new(410, "Expired", message)
    }

    /// 413: a body or object over the store's limit.
    pub fn too_large() -> Status {
        Status::new(
            413,
            "RequestEntityTooLarge",
            "Request entity too large: limit is 3145728".into(),
        )
    }

    /// 429: the store's queue is full.
    pub fn too_many_requests() -> Status {
        Status::new(
            429,
            "TooManyRequests",
            "the server has received too many requests and has asked us to try again later".into(),
        )
    }

    /// 504: the store did not answer in time.
    pub fn timeout(why: String) -> Status {
        Status::new(
            504,
            "Timeout",
            format!("Timeout: request did not complete within the allotted timeout ({why})"),
        )
    }

    /// 405 for a verb a resource does not serve.
    pub fn method_not_allowed(verb: &str, qualified: &str) -> Status {
        Status::new(
            405,
            "MethodNotAllowed",
            format!("the server does not allow this method on the requested resource ({verb} {qualified})"),
        )
    }

    /// 403 from authorization, worded as upstream's RBAC denial.
    pub fn forbidden(message: String) -> Status {
        Status::new(403, "Forbidden", message)
    }

    pub fn internal(message: String) -> Status {
        Status {
            code: 500,
            reason: "InternalError",
            message,
            details: None,
        }
    }

    pub fn not_found(what: &str) -> Status {
        Status {
            code: 404,
            reason: "NotFound",
            message: format!("the server could not find the requested resource ({what})"),
            details: None,
        }
    }
}

impl Status {
    /// The Status object itself, also sent inside watch ERROR events.
    pub fn to_json(&self) -> serde_json::Value {
        let mut body = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(details) = &self.details {
            body["details"] = details.clone();
        }
        body
    }
}

impl IntoResponse for Status {
    fn into_response(self) -> Response {
        let body = self.to_json();
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (code, Json(body)).into_response()
    }
}
