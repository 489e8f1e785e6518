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
}

impl Status {
    pub fn unauthorized() -> Status {
        Status {
            code: 401,
            reason: "Unauthorized",
            message: "Unauthorized".into(),
        }
    }

    pub fn not_found(what: &str) -> Status {
        Status {
            code: 404,
            reason: "NotFound",
            message: format!("the server could not find the requested resource ({what})"),
        }
    }
}

impl IntoResponse for Status {
    fn into_response(self) -> Response {
        let body = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (code, Json(body)).into_response()
    }
}
