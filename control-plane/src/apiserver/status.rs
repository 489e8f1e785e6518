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

    pub fn not_found_object(resource: &str, name: &str) -> Status {
        Status {
            code: 404,
            reason: "NotFound",
            message: format!("{resource} \"{name}\" not found"),
            details: None,
        }
    }

    pub fn already_exists(resource: &str, name: &str) -> Status {
        Status {
            code: 409,
            reason: "AlreadyExists",
            message: format!("{resource} \"{name}\" already exists"),
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

    /// 422 with one cause per bad field, each `(field, value, why)`.
    pub fn invalid(kind: &str, name: &str, causes: &[(&str, &str, &str)]) -> Status {
        let text: Vec<String> = causes
            .iter()
            .map(|(field, value, why)| format!("{field}: Invalid value: \"{value}\": {why}"))
            .collect();
        Status {
            code: 422,
            reason: "Invalid",
            message: format!("{kind} \"{name}\" is invalid: {}", text.join(", ")),
            details: Some(json!({
                "name": name,
                "kind": kind,
                "causes": causes.iter().zip(&text).map(|((field, _, _), msg)| json!({
                    "reason": "FieldValueInvalid",
                    "message": msg.split_once(": ").map(|(_, m)| m).unwrap_or(msg),
                    "field": field,
                })).collect::<Vec<_>>(),
            })),
        }
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

impl IntoResponse for Status {
    fn into_response(self) -> Response {
        let mut body = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(details) = self.details {
            body["details"] = details;
        }
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (code, Json(body)).into_response()
    }
}
