//! PATCH bodies: JSON merge patch (RFC 7386), JSON patch (RFC 6902), strategic merge patch
//! and server-side apply, chosen by the request's content type as upstream does.

use serde_json::Value;

use super::catalog::ResourceType;
use super::status::Status;

/// The four patch types Kubernetes accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Merge,
    Json,
    Strategic,
    Apply,
}

impl Kind {
    /// The patch type a Content-Type names; anything else is 415, as upstream answers.
    pub fn from_content_type(content_type: &str) -> Result<Kind, Status> {
        let base = content_type.split(';').next().unwrap_or("").trim();
        match base {
            "application/merge-patch+json" => Ok(Kind::Merge),
            "application/json-patch+json" => Ok(Kind::Json),
            "application/strategic-merge-patch+json" => Ok(Kind::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => Ok(Kind::Apply),
            other => Err(Status::new(
                415,
                "UnsupportedMediaType",
                format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {other:?})"),
            )),
        }
    }
}

/// The object `base` with `doc` applied.
pub fn apply(kind: Kind, res: &ResourceType, base: &Value, doc: &Value) -> Result<Value, Status> {
    let mut out = base.clone();
    match kind {
        Kind::Merge => {
            if !doc.is_object() {
                return Err(Status::bad_request(
                    "a merge patch must be a JSON object".into(),
                ));
            }
            json_patch::merge(&mut out, doc);
            Ok(out)
        }
        Kind::Json => {
            let ops: json_patch::Patch = serde_json::from_value(doc.clone())
                .map_err(|e| Status::bad_request(format!("invalid JSON patch: {e}")))?;
            json_patch::patch(&mut out, &ops).map_err(|e| {
                Status::new(
                    422,
                    "Invalid",
                    format!("the server rejected our request due to an error in our request: {e}"),
                )
            })?;
            Ok(out)
        }
        Kind::Strategic => {
            if !doc.is_object() {
                return Err(Status::bad_request(
                    "a strategic merge patch must be a JSON object".into(),
                ));
            }
            super::strategic_merge::apply(res.group, res.kind, base, doc).map_err(|e| match e
                .status_code()
            {
                415 => Status::new(415, "UnsupportedMediaType", e.to_string()),
                422 => Status::new(422, "Invalid", e.to_string()),
                _ => Status::bad_request(e.to_string()),
            })
        }
        Kind::Apply => Err(Status::new(
            415,
            "UnsupportedMediaType",
            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::catalog::find;
    use serde_json::json;

    #[test]
    fn merge_and_json_patches() {
        let cm = find("", "v1", "configmaps").unwrap();
        let base = json!({"data": {"a": "1", "b": "2"}});
        let merged = apply(
            Kind::Merge,
            cm,
            &base,
            &json!({"data": {"a": null, "c": "3"}}),
        )
        .unwrap();
        assert_eq!(merged, json!({"data": {"b": "2", "c": "3"}}));
        let patched = apply(
            Kind::Json,
            cm,
            &base,
            &json!([{"op": "replace", "path": "/data/a", "value": "9"}]),
        )
        .unwrap();
        assert_eq!(patched["data"]["a"], "9");
        assert_eq!(
            apply(
                Kind::Json,
                cm,
                &base,
                &json!([{"op": "remove", "path": "/nope"}])
            )
            .unwrap_err()
            .code,
            422
        );
        assert_eq!(
            apply(Kind::Json, cm, &base, &json!({"op": 1}))
                .unwrap_err()
                .code,
            400
        );
        assert_eq!(Kind::from_content_type("text/plain").unwrap_err().code, 415);
        assert_eq!(
            Kind::from_content_type("application/merge-patch+json; charset=utf-8").unwrap(),
            Kind::Merge
        );
    }
}
